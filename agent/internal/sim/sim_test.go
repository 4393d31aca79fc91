package sim

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"

	"flotilla.dev/agent/internal/fakecp"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// TestFleetRunsRealAgents runs a small simulated fleet against the fake
// control plane: every agent registers, opens its stream with a journal
// report, heartbeats with its simulated readings, and runs commands
// through the real runner (accepted, then succeeded, with a result).
func TestFleetRunsRealAgents(t *testing.T) {
	const n = 12
	srv := fakecp.Start(t)
	f, err := New(Config{
		Address: fakecp.Address, ServerName: fakecp.ServerName, CASHA256: srv.CA.SHA256, JoinToken: fakecp.JoinToken,
		StateRoot: t.TempDir(), Agents: n, FirstIndex: 100, HeartbeatInterval: time.Second,
		DialOptions: []grpc.DialOption{srv.DialOption()},
		Profile:     Profile{UnhealthyImage: "broken"},
		Logger:      zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { done <- f.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	streams := map[string]*fakecp.Stream{}
	for len(streams) < n {
		st, err := srv.NextStream(ctx)
		if err != nil {
			t.Fatalf("waiting for %d streams, have %d: %v", n, len(streams), err)
		}
		if !strings.HasPrefix(st.Hello.GetHostname(), "sim-0001") {
			t.Errorf("hello hostname %q, want sim-0001xx", st.Hello.GetHostname())
		}
		if got := st.Hello.GetContainers(); len(got) != 1 || got[0].GetImage() != "registry.sim/app:v1" {
			t.Errorf("hello containers %v, want one on registry.sim/app:v1", got)
		}
		streams[st.AgentID] = st
	}
	if got := srv.Registrations(); got != n {
		t.Errorf("registrations = %d, want %d", got, n)
	}

	// A restart onto a broken image on every agent: each accepts, succeeds,
	// reports the new container, and its application turns unhealthy.
	const image = "registry.sim/app:broken-1"
	for id, st := range streams {
		cmd := &flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Command{Command: &flotillav1.Command{
			Id: "cmd-" + id, Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{
				Restart: &flotillav1.RestartCommand{Container: "web", Image: image}}},
		}}}
		if err := st.Send(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	for id, st := range streams {
		var accepted, succeeded, unhealthy bool
		for !(accepted && succeeded && unhealthy) {
			var msg *flotillav1.ConnectRequest
			select {
			case msg = <-st.Received:
			case <-ctx.Done():
				t.Fatalf("agent %s: accepted=%v succeeded=%v unhealthy heartbeat=%v before the deadline", id, accepted, succeeded, unhealthy)
			}
			if ev := msg.GetCommandEvent(); ev != nil {
				switch ev.GetState() {
				case flotillav1.CommandState_COMMAND_STATE_ACCEPTED:
					accepted = true
				case flotillav1.CommandState_COMMAND_STATE_SUCCEEDED:
					succeeded = true
					if got := ev.GetResult().GetRestart().GetImage(); got != image {
						t.Errorf("agent %s: restart result image %q, want %q", id, got, image)
					}
				case flotillav1.CommandState_COMMAND_STATE_FAILED, flotillav1.CommandState_COMMAND_STATE_REJECTED:
					t.Fatalf("agent %s: command ended %s: %s", id, ev.GetState(), ev.GetMessage())
				}
			}
			if hb := msg.GetHeartbeat(); hb != nil && succeeded {
				if hb.GetHost().GetMemoryTotalBytes() == 0 || len(hb.GetContainers()) != 1 {
					t.Errorf("agent %s: heartbeat without simulated readings: %v", id, hb)
				}
				if hb.GetContainers()[0].GetImage() == image && !hb.GetApp().GetHealthy() {
					unhealthy = true
				}
			}
		}
	}
	if got := len(f.Stats().Receipts(image)); got != n {
		t.Errorf("receipts for %s = %d, want %d", image, got, n)
	}
	snap := f.Stats().Snapshot()
	if snap.Started != n || snap.Stopped != 0 || snap.Received["restart"] != n || snap.Succeeded != n || snap.Heartbeats == 0 {
		t.Errorf("stats = %+v, want %d started, none stopped, %d restarts received and succeeded, heartbeats", snap, n, n)
	}
}

func TestHostFailsAtItsRate(t *testing.T) {
	h := newHost("sim-1", Profile{FailureRate: 1, InitialImage: "app:v1"}, newStats(1))
	spec := &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{Restart: &flotillav1.RestartCommand{Container: "web", Image: "app:v2"}}}
	if _, err := h.Execute(context.Background(), spec, func(*flotillav1.CommandProgress) {}); err == nil {
		t.Fatal("a restart at failure rate 1 succeeded")
	}
	cs, _ := h.ManagedContainers(context.Background())
	if cs[0].GetImage() != "app:v1" {
		t.Errorf("a failed restart changed the image to %q", cs[0].GetImage())
	}
	if err := h.Validate(&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{Restart: &flotillav1.RestartCommand{Container: "db"}}}); err == nil {
		t.Error("a restart of an unmanaged container was not rejected")
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Agents: 0, StateRoot: "x"}, "agents must be positive"},
		{Config{Agents: 1}, "state root"},
		{Config{Agents: 1, StateRoot: "x", Logger: zaptest.NewLogger(t), Profile: Profile{FailureRate: 2}}, "failure rate"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error about %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := SourceRange(netip.MustParseAddr("255.255.255.254"), 4); err == nil {
		t.Error("a source range past the end of the address space was accepted")
	}
	got, err := SourceRange(netip.MustParseAddr("127.1.0.254"), 3)
	if err != nil || fmt.Sprint(got) != "[127.1.0.254 127.1.0.255 127.1.1.0]" {
		t.Errorf("SourceRange = %v, %v", got, err)
	}
}
