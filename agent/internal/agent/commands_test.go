package agent

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

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
