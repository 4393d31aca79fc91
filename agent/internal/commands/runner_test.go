package commands

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/agent/internal/journal"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHappyPath(t *testing.T) {
	h := newHarness(t)
	h.runner.Handle(pullCmd("c1", epoch.Add(time.Hour)))

	final := h.expect("c1", accepted, running, succeeded)
	if !proto.Equal(final.GetResult(), pullResult) {
		t.Errorf("final event carries result %v, want %v", final.GetResult(), pullResult)
	}
	if !final.GetAt().AsTime().Equal(epoch) {
		t.Errorf("event stamped %v, want the runner clock's %v", final.GetAt().AsTime(), epoch)
	}
	if got := h.reportOf("c1"); !proto.Equal(got, final) {
		t.Errorf("journal report has %v, want the final event %v", got, final)
	}
	if n := h.exec.executions.Load(); n != 1 {
		t.Errorf("executed %d times, want 1", n)
	}
	for _, state := range []string{"accepted", "running", "succeeded"} {
		logs := h.logs.FilterMessage("command " + state).All()
		if len(logs) != 1 {
			t.Fatalf("%d log lines for state %s, want 1", len(logs), state)
		}
		fields := logs[0].ContextMap()
		if fields["command_id"] != "c1" || fields["kind"] != "pull" || fields["state"] != state {
			t.Errorf("log line for %s has fields %v", state, fields)
		}
		if _, ok := fields["duration"]; !ok {
			t.Errorf("log line for %s has no duration", state)
		}
	}
}

func TestDuplicateDeliveryRunsOnce(t *testing.T) {
	h := newHarness(t)
	release := h.blockExecutor()
	cmd := pullCmd("dup", epoch.Add(time.Hour))

	h.runner.Handle(cmd)
	h.expect("dup", accepted, running)
	h.waitStarted()

	// Delivered again while it runs: the latest state is sent again.
	h.runner.Handle(proto.Clone(cmd).(*flotillav1.Command))
	h.expect("dup", running)

	release()
	final := h.expect("dup", succeeded)

	// Delivered again after it finished: the final event is sent again,
	// result included (the control plane may have missed it).
	h.runner.Handle(cmd)
	if again := h.next(); !proto.Equal(again, final) {
		t.Errorf("resent %v, want the final event %v", again, final)
	}
	if n := h.exec.executions.Load(); n != 1 {
		t.Fatalf("executed %d times, want once", n)
	}
}

// A command the agent journaled but never reported, because the process
// died, is not run again by the next process: it is reported FAILED.
func TestCommandInFlightAtCrashIsNeverRerun(t *testing.T) {
	h := newHarness(t)
	cmd := pullCmd("crash", epoch.Add(time.Hour))
	h.stop()

	// The previous process got as far as journaling the command.
	j, err := journal.Open(h.path, journal.Options{Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.Begin(cmd, &flotillav1.CommandEvent{CommandId: "crash", State: accepted}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	h.clock.Advance(time.Minute)
	h.start()
	got := h.reportOf("crash")
	if got.GetState() != failed || got.GetMessage() != journal.RestartMessage {
		t.Fatalf("journal report has %s %q, want FAILED %q", got.GetState(), got.GetMessage(), journal.RestartMessage)
	}

	// The control plane resends it (it never heard an outcome).
	h.runner.Handle(cmd)
	if ev := h.next(); ev.GetState() != failed || ev.GetMessage() != journal.RestartMessage {
		t.Errorf("the resent command got %v, want the restart failure", ev)
	}
	if n := h.exec.executions.Load(); n != 0 {
		t.Fatalf("executed %d times after the restart, want never", n)
	}
}

func TestCancelReachesTheExecutor(t *testing.T) {
	h := newHarness(t)
	h.blockExecutor()
	h.runner.Handle(pullCmd("c", epoch.Add(time.Hour)))
	h.expect("c", accepted, running)
	h.waitStarted()

	h.runner.Cancel("c", "rollout aborted")
	ev := h.expect("c", canceled)
	if !strings.Contains(ev.GetMessage(), "rollout aborted") {
		t.Errorf("cancel message %q does not give the reason", ev.GetMessage())
	}
	if h.reportOf("c").GetState() != canceled {
		t.Error("the cancellation is not journaled")
	}
	h.runner.Cancel("c", "again") // finished: ignored
	h.runner.Cancel("never-seen", "whatever")
}

func TestCancelBeforeTheExecutorStarts(t *testing.T) {
	h := newHarness(t)
	h.onSend = func(ev *flotillav1.CommandEvent) {
		if ev.GetState() == accepted {
			h.runner.Cancel(ev.GetCommandId(), "changed my mind")
		}
	}
	h.runner.Handle(pullCmd("c", epoch.Add(time.Hour)))
	ev := h.expect("c", accepted, canceled)
	if !strings.Contains(ev.GetMessage(), "changed my mind") || !strings.Contains(ev.GetMessage(), "not started") {
		t.Errorf("message %q", ev.GetMessage())
	}
	if n := h.exec.executions.Load(); n != 0 {
		t.Errorf("executed %d times, want never", n)
	}
}

func TestDeadlineStopsTheCommand(t *testing.T) {
	h := newHarness(t)
	deadline := epoch.Add(time.Minute)
	seen := make(chan time.Time, 1)
	h.exec.run = func(ctx context.Context, _ executor.Progress) (*flotillav1.CommandResult, error) {
		d, _ := ctx.Deadline()
		seen <- d
		<-ctx.Done()
		if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			t.Errorf("context cause %v, want a deadline", context.Cause(ctx))
		}
		return nil, errors.New("pull interrupted")
	}
	h.runner.Handle(pullCmd("slow", deadline))
	h.expect("slow", accepted, running)
	if d := <-seen; !d.Equal(deadline) {
		t.Errorf("the executor's context has deadline %v, want the command's %v", d, deadline)
	}

	h.clock.Advance(time.Minute)
	ev := h.expect("slow", timedOut)
	if !strings.Contains(ev.GetMessage(), "pull interrupted") || !strings.Contains(ev.GetMessage(), "deadline") {
		t.Errorf("message %q", ev.GetMessage())
	}
}

func TestDeadlineAlreadyPassed(t *testing.T) {
	h := newHarness(t)
	cmd := pullCmd("late", epoch.Add(-time.Second))
	h.runner.Handle(cmd)
	ev := h.expect("late", timedOut)
	if !strings.Contains(ev.GetMessage(), "not run") {
		t.Errorf("message %q does not say the command was not run", ev.GetMessage())
	}
	h.runner.Handle(cmd)
	h.expect("late", timedOut)
	if n := h.exec.executions.Load(); n != 0 {
		t.Fatalf("executed %d times, want never", n)
	}
}

func TestRefusals(t *testing.T) {
	backup := &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: "app"}}}
	tests := []struct {
		name     string
		cmd      *flotillav1.Command
		validate func(*flotillav1.CommandSpec) error
		want     string // in the message
	}{
		{name: "no spec", cmd: &flotillav1.Command{Id: "x"}, want: "no spec"},
		{name: "unknown kind", cmd: &flotillav1.Command{Id: "x", Spec: &flotillav1.CommandSpec{}}, want: "unknown command kind"},
		{name: "kind without executor", cmd: &flotillav1.Command{Id: "x", Spec: backup}, want: "no backup executor"},
		{
			name: "validation rejects", cmd: pullCmd("x", epoch.Add(time.Hour)),
			validate: func(*flotillav1.CommandSpec) error { return executor.Reject("image %q is not allowed", "evil:1") },
			want:     `image "evil:1" is not allowed`,
		},
		{
			name: "validation panics", cmd: pullCmd("x", epoch.Add(time.Hour)),
			validate: func(*flotillav1.CommandSpec) error { panic("bug") },
			want:     "panicked",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.exec.validate = tt.validate
			h.runner.Handle(tt.cmd)
			ev := h.expect("x", rejected)
			if !strings.Contains(ev.GetMessage(), tt.want) {
				t.Errorf("message %q does not contain %q", ev.GetMessage(), tt.want)
			}
			// Journaled: a duplicate gets the same answer.
			h.runner.Handle(tt.cmd)
			if again := h.next(); !proto.Equal(again, ev) {
				t.Errorf("duplicate got %v, want %v", again, ev)
			}
			if n := h.exec.executions.Load(); n != 0 {
				t.Fatalf("executed %d times, want never", n)
			}
		})
	}
}

func TestCommandWithoutIDIsDropped(t *testing.T) {
	h := newHarness(t)
	h.runner.Handle(&flotillav1.Command{Spec: pullCmd("", time.Time{}).GetSpec()})
	if h.logs.FilterMessage("command without an ID dropped: the control plane sent an invalid command").Len() != 1 {
		t.Error("the invalid command was not logged")
	}
	if n := len(h.runner.Report().GetEntries()); n != 0 {
		t.Errorf("journal holds %d entries, want none", n)
	}
	h.stop()
	h.noMoreEvents() // the control plane refuses an event without a command ID
	if n := h.exec.executions.Load(); n != 0 {
		t.Errorf("executed %d times, want never", n)
	}
}

func TestExecutionOutcomes(t *testing.T) {
	partial := &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Restart{Restart: &flotillav1.RestartResult{
		Container: "app", PreviousImage: "app:1",
	}}}
	tests := []struct {
		name       string
		run        func(context.Context, executor.Progress) (*flotillav1.CommandResult, error)
		state      flotillav1.CommandState
		message    string
		wantResult *flotillav1.CommandResult
	}{
		{
			name: "error fails with its message and partial result",
			run: func(context.Context, executor.Progress) (*flotillav1.CommandResult, error) {
				return partial, errors.New("new container unhealthy; previous container restored")
			},
			state: failed, message: "new container unhealthy; previous container restored", wantResult: partial,
		},
		{
			name: "rejection at run time",
			run: func(context.Context, executor.Progress) (*flotillav1.CommandResult, error) {
				return nil, executor.Reject("container app lacks the managed label")
			},
			state: rejected, message: "container app lacks the managed label",
		},
		{
			name: "panic fails without crashing the agent",
			run: func(context.Context, executor.Progress) (*flotillav1.CommandResult, error) {
				var m map[string]int
				m["boom"]++ // nil map write
				return nil, nil
			},
			state: failed, message: "panicked",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.exec.run = tt.run
			h.runner.Handle(pullCmd("c", epoch.Add(time.Hour)))
			ev := h.expect("c", accepted, running, tt.state)
			if !strings.Contains(ev.GetMessage(), tt.message) {
				t.Errorf("message %q does not contain %q", ev.GetMessage(), tt.message)
			}
			if !proto.Equal(ev.GetResult(), tt.wantResult) {
				t.Errorf("result %v, want %v", ev.GetResult(), tt.wantResult)
			}
			if got := h.reportOf("c"); !proto.Equal(got, ev) {
				t.Errorf("journal report has %v, want %v", got, ev)
			}
		})
	}
}

func TestProgressIsThrottled(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ProgressInterval = 2 * time.Second })
	firstSeen, reported, finish := make(chan struct{}), make(chan struct{}), make(chan struct{})
	h.exec.run = func(_ context.Context, progress executor.Progress) (*flotillav1.CommandResult, error) {
		progress(&flotillav1.CommandProgress{Message: "layer 1", Current: 1, Total: 100})
		<-firstSeen
		p := &flotillav1.CommandProgress{Total: 100}
		for i := uint64(2); i <= 100; i++ {
			p.Current, p.Message = i, "layer"
			progress(p) // the same message, reused: the runner must copy it
		}
		close(reported)
		<-finish
		return pullResult, nil
	}
	h.runner.Handle(pullCmd("p", time.Time{}))
	h.expect("p", accepted, running)
	first := h.expect("p", running)
	if first.GetProgress().GetCurrent() != 1 || first.GetMessage() != "layer 1" {
		t.Fatalf("first progress event %v", first)
	}
	close(firstSeen)
	<-reported
	// 99 reports arrived within the interval: one event, the latest, once
	// the interval has passed.
	if err := h.clock.BlockUntilContext(h.ctx, 1); err != nil { // the throttle's timer
		t.Fatal(err)
	}
	h.clock.Advance(2 * time.Second)
	second := h.expect("p", running)
	if second.GetProgress().GetCurrent() != 100 {
		t.Fatalf("second progress event %v, want the latest (100)", second)
	}
	if h.reportOf("p").GetProgress().GetCurrent() != 100 {
		t.Error("the journal does not hold the latest progress")
	}
	close(finish)
	h.expect("p", succeeded)
	h.stop()
	h.noMoreEvents()
}

func TestSendFailuresAreCaughtUpByTheReport(t *testing.T) {
	h := newHarness(t)
	h.sendErr.Store(true)
	h.runner.Handle(pullCmd("c", epoch.Add(time.Hour)))
	h.waitStarted()
	h.stop() // waits for the command
	h.start()
	if got := h.reportOf("c"); got.GetState() != succeeded || !proto.Equal(got.GetResult(), pullResult) {
		t.Errorf("journal report has %v, want the success with its result", got)
	}
}

func TestCloseLetsRunningCommandsFinish(t *testing.T) {
	h := newHarness(t)
	release := h.blockExecutor()
	h.runner.Handle(pullCmd("c", epoch.Add(time.Hour)))
	h.expect("c", accepted, running)
	h.waitStarted()

	closed := make(chan error, 1)
	go func() { closed <- h.runner.Close() }()
	if err := h.clock.BlockUntilContext(h.ctx, 2); err != nil { // the deadline and the grace timer
		t.Fatal(err)
	}
	h.runner.Handle(pullCmd("after-close", epoch.Add(time.Hour)))
	release()
	h.expect("c", succeeded)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	h.noMoreEvents() // the command that came during shutdown got no answer
	if n := h.exec.executions.Load(); n != 1 {
		t.Errorf("executed %d commands, want 1 (none after Close)", n)
	}
	if _, err := h.journal.Get("after-close"); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("a command received during shutdown was journaled (%v): the next process could never run it", err)
	}
}

func TestCloseCancelsCommandsAfterTheGrace(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ShutdownGrace = 10 * time.Second })
	h.blockExecutor()
	h.runner.Handle(pullCmd("c", time.Time{}))
	h.expect("c", accepted, running)
	h.waitStarted()

	closed := make(chan error, 1)
	go func() { closed <- h.runner.Close() }()
	if err := h.clock.BlockUntilContext(h.ctx, 1); err != nil { // the grace timer
		t.Fatal(err)
	}
	h.clock.Advance(10 * time.Second)
	ev := h.expect("c", canceled)
	if !strings.Contains(ev.GetMessage(), "shut down") {
		t.Errorf("message %q does not say why", ev.GetMessage())
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if h.reportOf("c").GetState() != canceled {
		t.Error("the cancellation is not journaled")
	}
}

func TestCloseGivesUpOnAnExecutorThatIgnoresCancel(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ShutdownGrace, c.CancelGrace = time.Second, time.Second })
	stuck := make(chan struct{})
	h.exec.run = func(context.Context, executor.Progress) (*flotillav1.CommandResult, error) {
		<-stuck
		return pullResult, nil
	}
	h.runner.Handle(pullCmd("stuck", time.Time{}))
	h.expect("stuck", accepted, running)
	h.waitStarted()

	closed := make(chan error, 1)
	go func() { closed <- h.runner.Close() }()
	for range 2 { // the grace, then the cancel grace
		if err := h.clock.BlockUntilContext(h.ctx, 1); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(time.Second)
	}
	if err := <-closed; err == nil || !strings.Contains(err.Error(), "stuck") {
		t.Fatalf("Close: %v, want an error naming the stuck command", err)
	}
	close(stuck) // let it end, so that the test's cleanup finds nothing running
	h.expect("stuck", succeeded)
}

func TestNewValidates(t *testing.T) {
	h := newHarness(t)
	valid := Config{Journal: h.journal, Send: h.send, Logger: zap.NewNop()}
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"no journal", func(c *Config) { c.Journal = nil }},
		{"no send", func(c *Config) { c.Send = nil }},
		{"no logger", func(c *Config) { c.Logger = nil }},
		{"unknown kind", func(c *Config) { c.Executors = map[string]executor.Executor{"reboot": newFake()} }},
		{"nil executor", func(c *Config) { c.Executors = map[string]executor.Executor{command.KindPull: nil} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.mutate(&cfg)
			if _, err := New(cfg); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestJournalFailureRefusesTheCommand(t *testing.T) {
	h := newHarness(t)
	if err := h.journal.Close(); err != nil { // the disk went away
		t.Fatal(err)
	}
	h.runner.Handle(pullCmd("c", epoch.Add(time.Hour)))
	ev := h.expect("c", rejected)
	if !strings.Contains(ev.GetMessage(), "could not journal") {
		t.Errorf("message %q", ev.GetMessage())
	}
	if n := h.exec.executions.Load(); n != 0 {
		t.Errorf("executed %d times without a journal entry, want never", n)
	}
	if n := len(h.runner.Report().GetEntries()); n != 0 {
		t.Errorf("a report from an unreadable journal has %d entries", n)
	}
}

// BeforeFinal runs once per command, after its final event is journaled
// and before that event is sent, and never for the events before it.
func TestBeforeFinalRunsBeforeTheFinalEventIsSent(t *testing.T) {
	var (
		mu    sync.Mutex
		order []string
	)
	note := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, s)
	}
	var h *harness
	h = newHarness(t, func(c *Config) {
		c.BeforeFinal = func(cmd *flotillav1.Command) {
			if got := h.reportOf(cmd.GetId()); got.GetState() != succeeded {
				t.Errorf("BeforeFinal ran with %v journaled, want the final event", got)
			}
			note("before final " + cmd.GetId())
		}
	})
	h.onSend = func(ev *flotillav1.CommandEvent) { note("send " + stateName(ev.GetState())) }
	h.runner.Handle(pullCmd("c1", epoch.Add(time.Hour)))
	h.expect("c1", accepted, running, succeeded)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"send accepted", "send running", "before final c1", "send succeeded"}; !slices.Equal(order, want) {
		t.Fatalf("got %v, want %v", order, want)
	}
}
