package fleet_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// benchFleet returns a registry holding n agents, each attached to a
// stream, on a real (empty) store that only the flusher would write to.
// Agents are added in memory only: registering tens of thousands through
// the store would cost a transaction each and measure nothing of interest.
func benchFleet(b *testing.B, n int, now func() time.Time) (*fleet.Registry, []*fleet.Session, store.Store) {
	b.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "flotilla.db"))
	if err != nil {
		b.Fatalf("sqlite.Open: %v", err)
	}
	b.Cleanup(func() { _ = st.Close() })
	r, err := fleet.New(fleet.Config{Store: st, Logger: zap.NewNop(), Now: now, LostAfter: lostAfter, FlushInterval: time.Hour})
	if err != nil {
		b.Fatalf("fleet.New: %v", err)
	}
	if err := r.Load(context.Background()); err != nil {
		b.Fatalf("Load: %v", err)
	}
	sessions := make([]*fleet.Session, n)
	for i := range n {
		id := fmt.Sprintf("agent-%06d", i)
		r.Add(store.Agent{ID: id, Hostname: "host-" + id, Labels: map[string]string{"env": "prod", "role": "web"},
			State: store.AgentDisconnected, RegisteredAt: now()})
		s, err := r.Attach(id, helloMsg(id, map[string]string{"env": "prod", "role": "web"}), "10.0.0.1:40000")
		if err != nil {
			b.Fatalf("Attach(%s): %v", id, err)
		}
		sessions[i] = s
	}
	return r, sessions, st
}

// benchHeartbeat is a typical heartbeat: host metrics, application health,
// one database and two managed containers (which heartbeatChanged compares
// field by field).
func benchHeartbeat(healthy bool) *flotillav1.Heartbeat {
	hb := heartbeatMsg(12.5, healthy)
	hb.Containers = []*flotillav1.ManagedContainer{
		{Name: "app", ContainerId: "3f4e5d6c7b8a", Image: "registry.example/app:v1", ImageId: "sha256:0123456789abcdef", State: "running"},
		{Name: "worker", ContainerId: "8a7b6c5d4e3f", Image: "registry.example/worker:v1", ImageId: "sha256:fedcba9876543210", State: "running"},
	}
	return hb
}

// BenchmarkHeartbeat measures Registry.Heartbeat, the registry's share of
// every heartbeat an agent stream receives, with 10,000 connected agents.
// Each agent's previous heartbeat is an equal message decoded separately,
// as from the wire, so the change check compares real contents.
//
//   - unchanged: the steady state, nothing to write;
//   - changed: every heartbeat flips application health, so each one also
//     marks its agent for the next flush;
//   - parallel: unchanged heartbeats from GOMAXPROCS goroutines, as from
//     many streams at once, which all take the registry's write lock.
func BenchmarkHeartbeat(b *testing.B) {
	const agents = 10000
	r, sessions, _ := benchFleet(b, agents, time.Now)
	// Two equal but distinct messages per health value.
	healthy := []*flotillav1.Heartbeat{benchHeartbeat(true), benchHeartbeat(true)}
	unhealthy := []*flotillav1.Heartbeat{benchHeartbeat(false), benchHeartbeat(false)}
	for _, s := range sessions {
		if err := r.Heartbeat(s, healthy[0]); err != nil {
			b.Fatal(err)
		}
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/heartbeat")
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heartbeats/s")
	}

	b.Run("unchanged", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			// Agent i%agents gets the other of the two equal messages on
			// each pass over the fleet.
			if err := r.Heartbeat(sessions[i%agents], healthy[(i/agents+1)%2]); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("changed", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			hb := healthy[0]
			if (i/agents)%2 == 0 {
				hb = unhealthy[0]
			}
			if err := r.Heartbeat(sessions[i%agents], hb); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
		// Leave every agent healthy for the next sub-benchmark.
		for _, s := range sessions {
			_ = r.Heartbeat(s, healthy[0])
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(next.Add(1))
				if err := r.Heartbeat(sessions[i%agents], healthy[(i/agents)%2]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b)
	})
}

// BenchmarkSweep measures one liveness sweep over 50,000 agents, during
// which the registry's write lock is held (every heartbeat waits for it).
//
//   - connected: every agent heartbeated recently; nothing changes;
//   - half-disconnected: every other agent has no stream and is still
//     within agent_lost_after; nothing changes either, but the rule for
//     disconnected agents is evaluated.
func BenchmarkSweep(b *testing.B) {
	const agents = 50000
	for _, tc := range []struct {
		name         string
		disconnected func(i int) bool
	}{
		{"connected", func(int) bool { return false }},
		{"half-disconnected", func(i int) bool { return i%2 == 1 }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			clk := newClock(time.Now())
			r, sessions, _ := benchFleet(b, agents, clk.Now)
			hb := benchHeartbeat(true)
			for i, s := range sessions {
				if err := r.Heartbeat(s, hb); err != nil {
					b.Fatal(err)
				}
				if tc.disconnected(i) {
					r.Detach(s, "benchmark")
				}
			}
			// Within agent_lost_after of every agent's last message.
			clk.Advance(lostAfter / 2)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				r.Sweep()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*agents), "ns/agent")
			if c := r.Counts(); c[store.AgentLost] != 0 {
				b.Fatalf("sweep marked %d agents lost; the benchmark must measure a sweep without changes", c[store.AgentLost])
			}
		})
	}
}

// BenchmarkFlush measures the flusher's batch for 1,000 agents whose
// heartbeat changed: encoding each heartbeat and writing all of them in
// one transaction (one fsync) to the SQLite store. RunFlusher passes its
// own, cancellable, context; the SQLite driver then watches it with a
// goroutine per statement, which the background case does without.
func BenchmarkFlush(b *testing.B) {
	const agents = 1000
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"ctx=background", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{"ctx=cancellable", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			clk := newClock(time.Now())
			r, sessions, st := benchFleet(b, agents, clk.Now)
			storeAgents(b, st, r, sessions, clk.Now())
			hbs := []*flotillav1.Heartbeat{benchHeartbeat(true), benchHeartbeat(false)}
			ctx, cancel := tc.ctx()
			defer cancel()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				for _, s := range sessions {
					if err := r.Heartbeat(s, hbs[i%2]); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if err := r.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*agents), "ns/agent")
		})
	}
}

// storeAgents inserts the registry's agents into st, in one transaction
// per agent as registration does, so that a flush updates real rows.
func storeAgents(b *testing.B, st store.Store, r *fleet.Registry, sessions []*fleet.Session, now time.Time) {
	b.Helper()
	ctx := context.Background()
	tok := store.JoinToken{ID: "bench", Hash: []byte("bench-join-token-hash"), MaxUses: len(sessions), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateJoinToken(ctx, tok); err != nil {
		b.Fatal(err)
	}
	for _, s := range sessions {
		a, _ := r.Get(s.AgentID())
		if _, err := st.RegisterAgent(ctx, tok.Hash, now, func(store.JoinToken) (store.Agent, error) {
			rec := a.Record
			rec.Hello, rec.LastHeartbeat = nil, nil
			return rec, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}
