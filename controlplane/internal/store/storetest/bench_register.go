package storetest

import (
	"context"
	"fmt"
	"testing"

	"flotilla.dev/controlplane/internal/store"
)

// benchRegisterAgents1000 measures the store's share of registering 1,000
// agents one after the other, as a fleet's first start does: per agent the
// audit row, the agent (token use, insert, read back) and the audit
// outcome, three write transactions. Each iteration adds 1,000 agents to
// the same store.
func benchRegisterAgents1000(b *testing.B, open BenchOpener) {
	const agents = 1000
	s := open(b)
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
	i := 0
	for b.Loop() {
		for range agents {
			register(i)
			i++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i), "ns/agent")
}
