package sqlite

import (
	"context"
	"fmt"
	"testing"

	"flotilla.dev/controlplane/internal/store"
)

// BenchmarkRegisterAgent measures the store's share of one registration:
// the audit row, the agent (token use, insert, read back) and the audit
// outcome, three write transactions, with the fleet already at 10,000
// agents.
func BenchmarkRegisterAgent(b *testing.B) {
	s := openTestStore(b)
	ctx := context.Background()
	tok := newJoinToken("fleet", 1<<30)
	mustCreateJoinToken(b, s, tok)
	register := func(i int) {
		id, err := s.AppendAuditEvent(ctx, store.AuditEvent{At: t0, Principal: "anonymous",
			Method: "/flotilla.v1.AgentService/Register", Request: `{"hostname":"web"}`, Peer: "10.0.0.1:5000"})
		if err != nil {
			b.Fatal(err)
		}
		agentID := fmt.Sprintf("agent-%07d", i)
		if _, err := s.RegisterAgent(ctx, tok.Hash, t0, func(store.JoinToken) (store.Agent, error) {
			return store.Agent{ID: agentID, Hostname: agentID, Labels: map[string]string{"env": "prod"}}, nil
		}); err != nil {
			b.Fatal(err)
		}
		if err := s.FinishAuditEvent(ctx, id, "OK", "", 0); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 10000 {
		register(i)
	}
	i := 10000
	for b.Loop() {
		register(i)
		i++
	}
}
