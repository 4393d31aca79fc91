package commands

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/agent/internal/journal"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var epoch = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

// fakeExecutor is a test double of executor.Executor: the real executors
// are tested in their own packages; these tests are about delivery.
type fakeExecutor struct {
	validate func(*flotillav1.CommandSpec) error
	// run does the work; nil succeeds at once with a pull result.
	run func(ctx context.Context, progress executor.Progress) (*flotillav1.CommandResult, error)

	executions atomic.Int32
	started    chan struct{} // one token per Execute call
}

func newFake() *fakeExecutor { return &fakeExecutor{started: make(chan struct{}, 16)} }

func (f *fakeExecutor) Validate(spec *flotillav1.CommandSpec) error {
	if f.validate != nil {
		return f.validate(spec)
	}
	return nil
}

func (f *fakeExecutor) Execute(ctx context.Context, _ *flotillav1.CommandSpec, progress executor.Progress) (*flotillav1.CommandResult, error) {
	f.executions.Add(1)
	f.started <- struct{}{}
	if f.run != nil {
		return f.run(ctx, progress)
	}
	return pullResult, nil
}

var pullResult = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Pull{Pull: &flotillav1.PullResult{
	Image: "app:2", ImageId: "sha256:abc",
}}}

// blockExecutor makes the executor wait for release (then succeed) or for
// its context (then fail with the context's error). The test's cleanup
// releases it before the runner is closed.
func (h *harness) blockExecutor() (release func()) {
	ch := make(chan struct{})
	h.exec.run = func(ctx context.Context, _ executor.Progress) (*flotillav1.CommandResult, error) {
		select {
		case <-ch:
			return pullResult, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	release = sync.OnceFunc(func() { close(ch) })
	h.t.Cleanup(release)
	return release
}

type harness struct {
	t       *testing.T
	clock   *clockwork.FakeClock
	path    string
	journal *journal.Journal
	runner  *Runner
	exec    *fakeExecutor
	logs    *observer.ObservedLogs
	ctx     context.Context // bounds every wait

	events  chan *flotillav1.CommandEvent // every event the runner sent
	sendErr atomic.Bool                   // Send fails while set
	onSend  func(*flotillav1.CommandEvent)
}

// newHarness builds a runner with exec as its "pull" executor, on a journal
// in a fresh state directory.
func newHarness(t *testing.T, mutate ...func(*Config)) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	h := &harness{
		t:      t,
		clock:  clockwork.NewFakeClockAt(epoch),
		path:   filepath.Join(t.TempDir(), journal.FileName),
		exec:   newFake(),
		ctx:    ctx,
		events: make(chan *flotillav1.CommandEvent, 100),
	}
	h.start(mutate...)
	return h
}

// start opens the journal and builds a runner on it; the test's cleanup
// closes both.
func (h *harness) start(mutate ...func(*Config)) {
	h.t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(h.t).Core()))
	j, err := journal.Open(h.path, journal.Options{Clock: h.clock, Logger: log})
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := Config{
		Journal:   j,
		Executors: map[string]executor.Executor{command.KindPull: h.exec},
		Send:      h.send,
		Clock:     h.clock,
		Logger:    log,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		_ = j.Close()
		h.t.Fatal(err)
	}
	h.journal, h.runner, h.logs = j, r, logs
	h.t.Cleanup(func() { h.stop() })
}

// stop closes the runner and the journal (for a restart, or at the end).
func (h *harness) stop() {
	if h.runner == nil {
		return
	}
	if err := h.runner.Close(); err != nil {
		h.t.Error(err)
	}
	if err := h.journal.Close(); err != nil {
		h.t.Error(err)
	}
	h.runner, h.journal = nil, nil
}

var errStreamDown = errors.New("no stream")

func (h *harness) send(ev *flotillav1.CommandEvent) error {
	if h.onSend != nil {
		h.onSend(ev)
	}
	if h.sendErr.Load() {
		return errStreamDown
	}
	h.events <- ev
	return nil
}

// next returns the next event the runner sent.
func (h *harness) next() *flotillav1.CommandEvent {
	h.t.Helper()
	select {
	case ev := <-h.events:
		return ev
	case <-h.ctx.Done():
		h.t.Fatal("no event from the runner")
		return nil
	}
}

// expect reads events and checks their states in order; it returns the last.
func (h *harness) expect(id string, states ...flotillav1.CommandState) *flotillav1.CommandEvent {
	h.t.Helper()
	var ev *flotillav1.CommandEvent
	for _, want := range states {
		ev = h.next()
		if ev.GetCommandId() != id || ev.GetState() != want {
			h.t.Fatalf("got event %s %s %q, want %s %s", ev.GetCommandId(), ev.GetState(), ev.GetMessage(), id, want)
		}
	}
	return ev
}

// noMoreEvents checks that nothing else was sent. Call it once the runner is
// quiescent (e.g. after Close), so that the check does not depend on timing.
func (h *harness) noMoreEvents() {
	h.t.Helper()
	select {
	case ev := <-h.events:
		h.t.Fatalf("unexpected event %s %s %q", ev.GetCommandId(), ev.GetState(), ev.GetMessage())
	default:
	}
}

// waitStarted waits until the fake executor has been called.
func (h *harness) waitStarted() {
	h.t.Helper()
	select {
	case <-h.exec.started:
	case <-h.ctx.Done():
		h.t.Fatal("the executor was never called")
	}
}

// reportOf returns the journal report's event for id.
func (h *harness) reportOf(id string) *flotillav1.CommandEvent {
	h.t.Helper()
	for _, ev := range h.runner.Report().GetEntries() {
		if ev.GetCommandId() == id {
			return ev
		}
	}
	h.t.Fatalf("the journal report has no entry for %s", id)
	return nil
}

func pullCmd(id string, deadline time.Time) *flotillav1.Command {
	cmd := &flotillav1.Command{
		Id:   id,
		Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: "app:2"}}},
	}
	if !deadline.IsZero() {
		cmd.Deadline = timestamppb.New(deadline)
	}
	return cmd
}
