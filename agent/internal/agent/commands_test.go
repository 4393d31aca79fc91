package agent

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/agent/internal/fakecp"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"google.golang.org/protobuf/proto"
)

const (
	stateRunning   = flotillav1.CommandState_COMMAND_STATE_RUNNING
	stateSucceeded = flotillav1.CommandState_COMMAND_STATE_SUCCEEDED
)

// fakeExecutor stands in for the real executors (tested in their packages):
// these tests are about the agent's wiring.
type fakeExecutor struct {
	release    chan struct{} // nil: succeed at once
	executions atomic.Int32
}

var pullResult = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Pull{Pull: &flotillav1.PullResult{Image: "app:2"}}}

func (f *fakeExecutor) Validate(*flotillav1.CommandSpec) error { return nil }

func (f *fakeExecutor) Execute(ctx context.Context, _ *flotillav1.CommandSpec, _ executor.Progress) (*flotillav1.CommandResult, error) {
	f.executions.Add(1)
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return pullResult, nil
}

func pullCommand(id string) *flotillav1.ConnectResponse {
	return &flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Command{Command: &flotillav1.Command{
		Id: id, Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: "app:2"}}},
	}}}
}

// connected waits for the agent's stream and its journal report.
func connected(t *testing.T, ctx context.Context, srv *fakecp.Server) (*fakecp.Stream, *flotillav1.JournalReport) {
	t.Helper()
	st, err := srv.NextStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	report := next(t, ctx, st).GetJournalReport()
	if report == nil {
		t.Fatal("the first message after the welcome is not a journal report")
	}
	return st, report
}

func TestCommandRunsOnceAcrossAgentRestarts(t *testing.T) {
	srv := fakecp.Start(t)
	ctx := waitCtx(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	exec := &fakeExecutor{}
	cfg := testConfig(t, srv, stateDir)
	cfg.Executors = map[string]executor.Executor{"pull": exec}

	first := runAgent(t, cfg)
	st, _ := connected(t, ctx, srv)
	if caps := strings.Join(st.Hello.GetCapabilities(), ","); caps != "heartbeat,docker" {
		t.Errorf("capabilities %q, want heartbeat,docker", caps)
	}
	if err := st.Send(ctx, pullCommand("c1")); err != nil {
		t.Fatal(err)
	}
	var final *flotillav1.CommandEvent
	for final.GetState() != stateSucceeded {
		final = nextEvent(t, ctx, st)
	}
	if err := first.stop(t, ctx); err != nil {
		t.Fatal(err)
	}

	runAgent(t, cfg)
	st, report := connected(t, ctx, srv)
	if len(report.GetEntries()) != 1 || !proto.Equal(report.GetEntries()[0], final) {
		t.Fatalf("report after the restart: %v, want the final event %v", report.GetEntries(), final)
	}
	if err := st.Send(ctx, pullCommand("c1")); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ctx, st); !proto.Equal(ev, final) {
		t.Fatalf("redelivery got %v, want the final event again", ev)
	}
	if n := exec.executions.Load(); n != 1 {
		t.Fatalf("executed %d times, want once", n)
	}
}

func TestShutdownLetsARunningCommandReportOnTheOpenStream(t *testing.T) {
	srv := fakecp.Start(t)
	ctx := waitCtx(t)
	exec := &fakeExecutor{release: make(chan struct{})}
	cfg := testConfig(t, srv, filepath.Join(t.TempDir(), "state"))
	cfg.Executors = map[string]executor.Executor{"pull": exec}
	agent := runAgent(t, cfg)

	st, _ := connected(t, ctx, srv)
	if err := st.Send(ctx, pullCommand("c1")); err != nil {
		t.Fatal(err)
	}
	for nextEvent(t, ctx, st).GetState() != stateRunning {
	}

	agent.cancel() // SIGTERM
	close(exec.release)
	if ev := nextEvent(t, ctx, st); ev.GetState() != stateSucceeded {
		t.Fatalf("got %v, want the command's success before the stream closes", ev)
	}
	select {
	case <-st.ClosedByClient:
	case <-ctx.Done():
		t.Fatal("the agent did not close its stream after the command finished")
	}
	if err := agent.stop(t, ctx); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
}

func TestNewRejectsAnExecutorOfUnknownKind(t *testing.T) {
	srv := fakecp.Start(t)
	cfg := testConfig(t, srv, t.TempDir())
	cfg.Executors = map[string]executor.Executor{"reboot": &fakeExecutor{}}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "reboot") {
		t.Fatalf("New: %v, want an error naming the unknown kind", err)
	}
}

// imageLister lists one managed container running image.
type imageLister struct{ image atomic.Value }

func (l *imageLister) ManagedContainers(context.Context) ([]*flotillav1.ManagedContainer, error) {
	return []*flotillav1.ManagedContainer{{Name: "app", Image: l.image.Load().(string), State: "running"}}, nil
}

// restartExecutor "restarts" the container on the command's image.
type restartExecutor struct{ lister *imageLister }

func (restartExecutor) Validate(*flotillav1.CommandSpec) error { return nil }

func (e restartExecutor) Execute(_ context.Context, spec *flotillav1.CommandSpec, _ executor.Progress) (*flotillav1.CommandResult, error) {
	e.lister.image.Store(spec.GetRestart().GetImage())
	return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Restart{Restart: &flotillav1.RestartResult{
		Container: "app", Image: spec.GetRestart().GetImage()}}}, nil
}

// The final event of a command that changed the containers comes right
// after a heartbeat showing them as it left them, long before the next
// interval's; a pull's does not.
func TestHeartbeatShowsTheContainersBeforeARestartEnds(t *testing.T) {
	srv := fakecp.Start(t)
	ctx := waitCtx(t)
	lister := &imageLister{}
	lister.image.Store("app:1")
	cfg := testConfig(t, srv, filepath.Join(t.TempDir(), "state"))
	cfg.HeartbeatInterval = time.Hour // only the first heartbeat, and those asked for
	cfg.Containers = lister
	cfg.Executors = map[string]executor.Executor{"pull": &fakeExecutor{}, "restart": restartExecutor{lister: lister}}
	runAgent(t, cfg)
	st, _ := connected(t, ctx, srv)
	if hb := next(t, ctx, st).GetHeartbeat(); hb.GetContainers()[0].GetImage() != "app:1" {
		t.Fatalf("first heartbeat %v, want app:1 running", hb)
	}

	// untilFinal returns the images of the heartbeats received before cmd's
	// final event.
	untilFinal := func(cmd *flotillav1.Command) []string {
		t.Helper()
		if err := st.Send(ctx, &flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Command{Command: cmd}}); err != nil {
			t.Fatal(err)
		}
		var images []string
		for {
			msg := next(t, ctx, st)
			if hb := msg.GetHeartbeat(); hb != nil {
				images = append(images, hb.GetContainers()[0].GetImage())
			}
			if ev := msg.GetCommandEvent(); ev.GetState() == stateSucceeded {
				return images
			}
		}
	}
	if got := untilFinal(pullCommand("c1").GetCommand()); len(got) != 0 {
		t.Errorf("a pull's final event came after heartbeats %v, want none", got)
	}
	restart := &flotillav1.Command{Id: "c2", Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{
		Restart: &flotillav1.RestartCommand{Container: "app", Image: "app:2"}}}}
	if got := untilFinal(restart); !slices.Equal(got, []string{"app:2"}) {
		t.Fatalf("the restart's final event came after heartbeats %v, want one showing app:2", got)
	}
}
