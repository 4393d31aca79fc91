package commands_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

const (
	stateAccepted  = flotillav1.CommandState_COMMAND_STATE_ACCEPTED
	stateRunning   = flotillav1.CommandState_COMMAND_STATE_RUNNING
	stateSucceeded = flotillav1.CommandState_COMMAND_STATE_SUCCEEDED
)

// benchEnv is a control plane's command path without gRPC: a SQLite store
// in a temporary directory (synchronous=FULL, as in production), a
// registry whose agents all have an open session, the dispatcher and the
// manager, with metrics on.
type benchEnv struct {
	st       *sqlite.Store
	reg      *fleet.Registry
	disp     *commands.Dispatcher
	mgr      *commands.Manager
	sessions []*fleet.Session
	agentIDs []string // sorted
}

func newBenchEnv(b *testing.B, agents int, listeners ...commands.Listener) *benchEnv {
	b.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "flotilla.db"))
	if err != nil {
		b.Fatalf("sqlite.Open: %v", err)
	}
	b.Cleanup(func() { _ = st.Close() })
	reg, err := fleet.New(fleet.Config{Store: st, Logger: zap.NewNop(), LostAfter: time.Minute, FlushInterval: time.Hour})
	if err != nil {
		b.Fatalf("fleet.New: %v", err)
	}
	if err := reg.Load(ctx); err != nil {
		b.Fatalf("registry Load: %v", err)
	}
	metrics := commands.NewMetrics(prometheus.NewRegistry())
	disp, err := commands.NewDispatcher(commands.DispatcherConfig{Store: st, Registry: reg, Logger: zap.NewNop(), Metrics: metrics})
	if err != nil {
		b.Fatalf("NewDispatcher: %v", err)
	}
	mgr, err := commands.NewManager(commands.ManagerConfig{Store: st, Registry: reg, Dispatcher: disp, Logger: zap.NewNop(), Metrics: metrics})
	if err != nil {
		b.Fatalf("NewManager: %v", err)
	}
	// After the manager's: a listener sees an update once the manager
	// has taken it into account.
	for _, l := range listeners {
		disp.Listen(l)
	}
	e := &benchEnv{st: st, reg: reg, disp: disp, mgr: mgr}
	now := time.Now()
	for i := range agents {
		id := fmt.Sprintf("web-%05d", i)
		reg.Add(store.Agent{ID: id, Hostname: id, Labels: map[string]string{"role": "web"}, State: store.AgentDisconnected, RegisteredAt: now})
		s, err := reg.Attach(id, &flotillav1.Hello{AgentId: id, Version: "v1.0.0", Hostname: id}, "10.0.0.1:40000")
		if err != nil {
			b.Fatalf("Attach(%s): %v", id, err)
		}
		e.sessions = append(e.sessions, s)
		e.agentIDs = append(e.agentIDs, id)
	}
	return e
}

// benchPullSpec is the command the benchmarks run.
func benchPullSpec() *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: "registry.example.com/shop/web:1.4.2"}}}
}

// benchResult is the result a fake agent reports.
var benchResult = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Pull{Pull: &flotillav1.PullResult{
	Image: "registry.example.com/shop/web:1.4.2", ImageId: "sha256:0123", RepoDigest: "registry.example.com/shop/web@sha256:4567",
}}}

// agentEvents are the events an agent sends for a command that succeeds
// at once: what agent/internal/commands sends, in its order.
func agentEvents(id string) []*flotillav1.CommandEvent {
	now := timestamppb.Now()
	return []*flotillav1.CommandEvent{
		{CommandId: id, State: stateAccepted, Message: "accepted", At: now},
		{CommandId: id, State: stateRunning, Message: "running", At: now},
		{CommandId: id, State: stateSucceeded, Message: "pulled registry.example.com/shop/web:1.4.2", At: now, Result: benchResult},
	}
}

// deliver applies the events of one command as the agent service does for
// each message of a stream: the registry is touched, then the dispatcher
// applies the event.
func (e *benchEnv) deliver(ctx context.Context, s *fleet.Session, commandID string) error {
	for _, ev := range agentEvents(commandID) {
		e.reg.Touch(s)
		if err := e.disp.OnEvent(ctx, s.AgentID(), ev); err != nil {
			return fmt.Errorf("OnEvent(%s, %s): %w", commandID, ev.GetState(), err)
		}
	}
	return nil
}

// startAgents runs one fake agent per session, as one stream handler per
// agent does in the server: each answers every command it receives with
// ACCEPTED, RUNNING and SUCCEEDED at once, under a cancellable context as
// a stream's is. They stop when the benchmark ends.
func (e *benchEnv) startAgents(b *testing.B) {
	var wg sync.WaitGroup
	for _, s := range e.sessions {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for {
				select {
				case <-s.Done():
					return
				case <-s.Ready():
				}
				for _, msg := range s.Take() {
					if cmd := msg.GetCommand(); cmd != nil {
						if err := e.deliver(ctx, s, cmd.GetId()); err != nil {
							b.Error(err)
							return
						}
					}
				}
			}
		})
	}
	b.Cleanup(func() {
		e.reg.CloseSessions(errors.New("benchmark over"))
		wg.Wait()
	})
}

// BenchmarkDispatcherOneCommand measures the life of one host command in
// the dispatcher, on one goroutine: tracked, released (stored and queued
// to the agent's session), taken from the session, then its ACCEPTED,
// RUNNING and SUCCEEDED events applied.
func BenchmarkDispatcherOneCommand(b *testing.B) {
	e := newBenchEnv(b, 1)
	// Cancellable, as a stream's context is: the SQLite driver treats such
	// contexts differently (it watches them).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec, err := proto.Marshal(benchPullSpec())
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	hcs := make([]store.HostCommand, b.N)
	for i := range hcs {
		hcs[i] = store.HostCommand{ID: fmt.Sprintf("bench-%d", i), AgentID: e.agentIDs[0], Kind: command.KindPull, Spec: spec,
			State: int32(flotillav1.CommandState_COMMAND_STATE_PENDING), Message: "queued", CreatedAt: now}
	}
	if err := e.st.CreateHostCommands(ctx, hcs); err != nil {
		b.Fatal(err)
	}
	s := e.sessions[0]
	b.ReportAllocs()
	b.ResetTimer()
	for i := range hcs {
		e.disp.Track(hcs[i:i+1], nil)
		if err := e.disp.Release(ctx, []string{hcs[i].ID}, time.Minute); err != nil {
			b.Fatal(err)
		}
		msgs := s.Take()
		if len(msgs) != 1 || msgs[0].GetCommand().GetId() != hcs[i].ID {
			b.Fatalf("session holds %v, want command %s", msgs, hcs[i].ID)
		}
		if err := e.deliver(ctx, s, hcs[i].ID); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/command")
	if hc, err := e.st.GetHostCommand(ctx, hcs[b.N-1].ID); err != nil || hc.State != int32(stateSucceeded) {
		b.Fatalf("last command stored as %v (%v), want succeeded", hc.State, err)
	}
}

// BenchmarkRunCommand measures a fleet command on 1,000 and 10,000
// hosts (no concurrency limit), from Manager.Start to every host finished,
// with one fake agent per host answering at once from its own goroutine.
// Besides the time per host it reports, over all iterations, the
// percentiles of the time from Run's start to each host's ACCEPTED being
// recorded (stored and seen by listeners): the fan-out figure of the
// scale targets, without the network.
func BenchmarkRunCommand(b *testing.B) {
	for _, hosts := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			var (
				start   atomic.Pointer[time.Time]
				mu      sync.Mutex
				acks    []time.Duration
				done    int
				allDone = make(chan struct{}, 1)
			)
			e := newBenchEnv(b, hosts, func(u commands.Update) {
				switch st := flotillav1.CommandState(u.Command.State); {
				case st == stateAccepted:
					d := time.Since(*start.Load())
					mu.Lock()
					acks = append(acks, d)
					mu.Unlock()
				case command.Terminal(st):
					mu.Lock()
					done++
					if done == hosts {
						allDone <- struct{}{}
					}
					mu.Unlock()
				}
			})
			e.startAgents(b)
			req := &flotillav1.RunCommandRequest{AgentIds: e.agentIDs, Spec: benchPullSpec(), Reason: "benchmark"}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				mu.Lock()
				done = 0
				mu.Unlock()
				now := time.Now()
				start.Store(&now)
				// Cancellable, as an RPC's context is.
				ctx, cancel := context.WithCancel(context.Background())
				fc, err := e.mgr.Start(ctx, req, "operator:test")
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				<-allDone
				b.StopTimer()
				got, err := e.mgr.Get(context.Background(), fc.GetId(), flotillav1.CommandView_COMMAND_VIEW_FULL)
				if err != nil || got.GetState() != flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED || got.GetSummary()["succeeded"] != int32(hosts) {
					b.Fatalf("fleet command ended %v with %v (%v), want SUCCEEDED on %d hosts", got.GetState(), got.GetSummary(), err, hosts)
				}
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*hosts), "ns/host")
			slices.Sort(acks)
			b.ReportMetric(float64(acks[len(acks)/2].Microseconds())/1000, "ack-p50-ms")
			b.ReportMetric(float64(acks[len(acks)*99/100].Microseconds())/1000, "ack-p99-ms")
		})
	}
}
