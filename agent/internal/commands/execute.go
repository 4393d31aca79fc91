package commands

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/agent/internal/journal"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/logging"
	"go.uber.org/zap"
)

// execution is one accepted command, from ACCEPTED to its final event.
type execution struct {
	cmd        *flotillav1.Command
	kind       string
	exec       executor.Executor
	receivedAt time.Time
	accepted   *flotillav1.CommandEvent // journaled by Begin, not yet sent

	// ctx is cancelled on Cancel, at the deadline, and at shutdown; its
	// cause says which.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// emitMu orders the command's events (see emit).
	emitMu sync.Mutex
	// done is closed once the final event is journaled and sent.
	done chan struct{}
}

// errDeadline is the cause of a command context cancelled by its deadline.
var errDeadline = fmt.Errorf("the command's deadline passed: %w", context.DeadlineExceeded)

// cancelled is the cause of a command context cancelled by a CancelCommand
// or by the agent's shutdown.
type cancelled struct {
	reason   string
	shutdown bool
	grace    time.Duration
}

func (c *cancelled) Error() string {
	if c.shutdown {
		return fmt.Sprintf("the agent shut down and the command did not finish within %v", c.grace)
	}
	if c.reason == "" {
		return "cancelled by the control plane"
	}
	return "cancelled by the control plane: " + c.reason
}

func (c *cancelled) Unwrap() error { return context.Canceled }

// startLocked registers an accepted command as running and starts it.
// r.mu must be held, so that Close sees every execution it must wait for.
func (r *Runner) startLocked(entry *journal.Entry, exec executor.Executor) {
	cmd := entry.Command
	x := &execution{
		cmd:        cmd,
		kind:       command.Kind(cmd.GetSpec()),
		exec:       exec,
		receivedAt: entry.ReceivedAt,
		accepted:   entry.LastEvent,
		done:       make(chan struct{}),
	}
	var stopDeadline func() bool
	x.ctx, x.cancel, stopDeadline = r.commandContext(cmd)
	r.running[cmd.GetId()] = x
	go func() {
		defer close(x.done)
		defer r.forget(x)
		defer stopDeadline()
		defer x.cancel(nil) // releases the context's resources
		r.execute(x)
	}()
}

// commandContext is the context a command runs in: cancelled with a cause,
// and by the deadline on the runner's clock (so that tests can move it).
// Deadline reports the command's deadline, so that executors can pass it on.
func (r *Runner) commandContext(cmd *flotillav1.Command) (context.Context, context.CancelCauseFunc, func() bool) {
	ctx, cancel := context.WithCancelCause(context.Background())
	if cmd.GetDeadline() == nil {
		return ctx, cancel, func() bool { return false }
	}
	deadline := cmd.GetDeadline().AsTime()
	timer := r.cfg.Clock.AfterFunc(deadline.Sub(r.cfg.Clock.Now()), func() { cancel(errDeadline) })
	return deadlineContext{Context: ctx, deadline: deadline}, cancel, timer.Stop
}

// deadlineContext reports a deadline that a timer on the runner's clock
// enforces (context.WithDeadline would use real time).
type deadlineContext struct {
	context.Context
	deadline time.Time
}

func (c deadlineContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (r *Runner) forget(x *execution) {
	r.mu.Lock()
	delete(r.running, x.cmd.GetId())
	r.mu.Unlock()
}

// execute runs an accepted command to its final event.
func (r *Runner) execute(x *execution) {
	id := x.cmd.GetId()
	// ACCEPTED is journaled (Begin); it still has to be sent.
	x.emitMu.Lock()
	r.logEvent(x.cmd, x.accepted, x.receivedAt)
	r.send(x.accepted)
	x.emitMu.Unlock()

	if x.ctx.Err() != nil { // cancelled, or past its deadline, before it started
		r.emit(x, r.outcome(x, nil, errNotStarted))
		return
	}
	r.emit(x, r.event(id, running, "running"))
	progress := r.startProgress(x)
	result, err := r.call(x, progress.report)
	progress.stop()
	r.emit(x, r.outcome(x, result, err))
}

// errNotStarted ends a command cancelled before its executor was called.
var errNotStarted = errors.New("it had not started")

// panicError is an executor's panic, recovered.
type panicError struct{ value any }

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// call runs the executor. A panic is recovered and returned as a
// *panicError, so that one faulty command fails instead of killing the agent.
func (r *Runner) call(x *execution, progress executor.Progress) (result *flotillav1.CommandResult, err error) {
	defer func() {
		if v := recover(); v != nil {
			r.log.Error("command executor panicked", logging.CommandID(x.cmd.GetId()),
				zap.String("kind", x.kind), zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			result, err = nil, &panicError{value: v}
		}
	}()
	return x.exec.Execute(x.ctx, x.cmd.GetSpec(), progress)
}

// outcome is the final event of an execution.
func (r *Runner) outcome(x *execution, result *flotillav1.CommandResult, err error) *flotillav1.CommandEvent {
	id := x.cmd.GetId()
	ev := func(state flotillav1.CommandState, format string, args ...any) *flotillav1.CommandEvent {
		e := r.event(id, state, fmt.Sprintf(format, args...))
		e.Result = result // partial results of failures are kept too
		return e
	}
	var (
		cancel   *cancelled
		panicked *panicError
	)
	cause := context.Cause(x.ctx)
	switch {
	case errors.As(err, &panicked):
		return ev(failed, "the %s executor panicked: %v (what it changed on the host is unknown: check it)", x.kind, panicked.value)
	case err == nil:
		return ev(succeeded, "succeeded")
	case executor.IsRejection(err):
		return ev(rejected, "%s", err.Error())
	case x.ctx.Err() != nil && errors.Is(cause, errDeadline):
		return ev(timedOut, "the deadline %s passed: %v", x.cmd.GetDeadline().AsTime().UTC().Format(time.RFC3339), err)
	case x.ctx.Err() != nil && errors.As(cause, &cancel):
		return ev(canceled, "%s: %v", cancel.Error(), err)
	default:
		return ev(failed, "%s", err.Error())
	}
}
