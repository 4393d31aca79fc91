package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// benchUpdateAgentStatuses measures one heartbeat flush: a batch of
// 1000 updates in one transaction (one commit).
func benchUpdateAgentStatuses(b *testing.B, open BenchOpener) {
	const agents = 1000
	s := open(b)
	ctx := context.Background()
	tok := newJoinToken("fleet", agents)
	mustCreateJoinToken(b, s, tok)
	updates := make([]store.AgentStatus, agents)
	for i := range agents {
		id := fmt.Sprintf("agent-%04d", i)
		_, err := s.RegisterAgent(ctx, tok.Hash, t0, func(store.JoinToken) (store.Agent, error) {
			return store.Agent{ID: id, Labels: map[string]string{"env": "prod"}}, nil
		})
		if err != nil {
			b.Fatal(err)
		}
		updates[i] = store.AgentStatus{
			ID:            id,
			State:         store.AgentConnected,
			PeerAddress:   "10.0.0.1:5000",
			LastHeartbeat: make([]byte, 256), // about a serialized heartbeat
		}
	}
	for b.Loop() {
		now := time.Now()
		for i := range updates {
			updates[i].LastSeenAt = now
		}
		if _, err := s.UpdateAgentStatuses(ctx, updates); err != nil {
			b.Fatal(err)
		}
	}
}

// benchGetAPITokenByHash measures the lookup behind every operator call.
func benchGetAPITokenByHash(b *testing.B, open BenchOpener) {
	const tokens = 1000
	s := open(b)
	ctx := context.Background()
	hashes := make([][]byte, tokens)
	for i := range tokens {
		tok := newAPIToken(fmt.Sprintf("tok-%04d", i))
		if err := s.CreateAPIToken(ctx, tok); err != nil {
			b.Fatal(err)
		}
		hashes[i] = tok.Hash
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.GetAPITokenByHash(ctx, hashes[i%tokens]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
