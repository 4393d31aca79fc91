package commands

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/agent/internal/journal"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/logging"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
)

// Defaults for the zero fields of Config.
const (
	DefaultProgressInterval = time.Second
	DefaultShutdownGrace    = 30 * time.Second
	DefaultCancelGrace      = 5 * time.Second
)

// Config configures a Runner.
type Config struct {
	// Journal records every command and its last event (required).
	Journal *journal.Journal
	// Executors carry out the commands, by kind (see command.Kinds). A command of a
	// kind without an executor is rejected.
	Executors map[string]executor.Executor
	// Send sends an event to the control plane (required). It is best
	// effort: it fails while the agent has no stream, and the journal report
	// of the next stream then carries the event.
	Send func(*flotillav1.CommandEvent) error
	// BeforeFinal, when set, is called with a command once its final event
	// is journaled and before it is sent. The agent sends a heartbeat there
	// after a command that changed its containers, so that the control
	// plane sees them as the command left them before it hears it ended.
	BeforeFinal func(*flotillav1.Command)
	// Clock stamps events and runs deadlines and throttling; nil is real time.
	Clock  clockwork.Clock
	Logger *zap.Logger
	// ProgressInterval is the least time between two progress events of a
	// command; progress in between is coalesced, the latest wins.
	ProgressInterval time.Duration
	// ShutdownGrace is how long Close lets running commands finish before it
	// cancels them.
	ShutdownGrace time.Duration
	// CancelGrace is how long Close waits for cancelled commands to return.
	CancelGrace time.Duration
}

// Runner runs commands. Its methods are safe for concurrent use.
type Runner struct {
	cfg Config
	log *zap.Logger

	// mu guards running and closing. It is never held while sending, so that
	// Send may block on the stream without blocking Cancel or Close.
	mu      sync.Mutex
	running map[string]*execution
	closing bool
}

// New validates cfg, fills its defaults and recovers the journal: commands
// a previous agent process left in flight are marked failed, never run again.
func New(cfg Config) (*Runner, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	setDefault(&cfg.ProgressInterval, DefaultProgressInterval)
	setDefault(&cfg.ShutdownGrace, DefaultShutdownGrace)
	setDefault(&cfg.CancelGrace, DefaultCancelGrace)
	if _, err := cfg.Journal.Recover(cfg.Clock.Now()); err != nil {
		return nil, fmt.Errorf("commands: %w", err)
	}
	return &Runner{cfg: cfg, log: cfg.Logger, running: make(map[string]*execution)}, nil
}

func (c Config) validate() error {
	switch {
	case c.Journal == nil:
		return errors.New("commands: a journal is required")
	case c.Send == nil:
		return errors.New("commands: a send function is required")
	case c.Logger == nil:
		return errors.New("commands: a logger is required")
	}
	for kind, exec := range c.Executors {
		if !slices.Contains(command.Kinds(), kind) {
			return fmt.Errorf("commands: executor for unknown kind %q (known kinds: %v)", kind, command.Kinds())
		}
		if exec == nil {
			return fmt.Errorf("commands: the %s executor is nil", kind)
		}
	}
	return nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Handle takes one delivery of a command. It journals the command and
// answers it, and starts the execution in the background: it returns once
// the command is journaled, not when it has run. A command already in the
// journal is not run again; its latest event is sent again instead.
func (r *Runner) Handle(cmd *flotillav1.Command) {
	id := cmd.GetId()
	switch {
	case id == "":
		r.refuseAnonymous(cmd)
		return
	case len(id) > MaxCommandIDBytes:
		r.refuseOversizedID(cmd)
		return
	}
	if r.resend(id) {
		return
	}
	first, exec := r.admit(cmd)

	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		r.log.Info("command not accepted: the agent is shutting down (the control plane resends it to the next agent process)",
			logging.CommandID(id))
		return
	}
	entry, created, err := r.cfg.Journal.Begin(cmd, first)
	started := err == nil && created && first.GetState() == accepted
	if started {
		r.startLocked(entry, exec) // it sends its own events
	}
	r.mu.Unlock()

	switch {
	case started:
	case err != nil:
		r.refuseUnjournaled(cmd, err)
	case !created: // a concurrent delivery journaled it first
		r.log.Info("duplicate delivery: resending the command's latest event", logging.CommandID(id))
		r.send(entry.LastEvent)
	default: // refused before it started; the refusal is journaled
		r.logEvent(cmd, first, entry.ReceivedAt)
		r.send(first)
	}
}

// resend answers a command already in the journal with its latest event and
// reports whether it did. A running command's event is read and sent under
// its emit lock, so that a resend never overtakes a newer event.
func (r *Runner) resend(id string) bool {
	r.mu.Lock()
	x := r.running[id]
	r.mu.Unlock()
	if x != nil {
		x.emitMu.Lock()
		defer x.emitMu.Unlock()
	}
	entry, err := r.cfg.Journal.Get(id)
	if err != nil {
		// Not journaled yet, or unreadable: Begin decides, atomically.
		return false
	}
	r.log.Info("duplicate delivery: resending the command's latest event",
		logging.CommandID(id), zap.String("state", stateName(entry.State)))
	r.send(entry.LastEvent)
	return true
}

// Cancel stops a running command: its context is cancelled with reason, and
// it ends CANCELLED (unless it finishes first). A cancel for a command that
// is not running is logged and ignored: it already has a final event.
func (r *Runner) Cancel(id, reason string) {
	// Both come from the control plane: bound what goes into the logs.
	id, reason = truncate(id, MaxCommandIDBytes), truncate(reason, MaxEventMessageBytes)
	r.mu.Lock()
	x := r.running[id]
	r.mu.Unlock()
	if x == nil {
		r.log.Info("cancel for a command that is not running ignored", logging.CommandID(id), zap.String("reason", reason))
		return
	}
	r.log.Info("cancelling command", logging.CommandID(id), zap.String("kind", x.kind), zap.String("reason", reason))
	x.cancel(&cancelled{reason: reason})
}

// Report is the journal report sent after the hello of every stream: the
// latest event of every command the journal holds. A journal that cannot be
// read gives an empty report (logged); the next stream tries again.
func (r *Runner) Report() *flotillav1.JournalReport {
	events, err := r.cfg.Journal.Entries()
	if err != nil {
		r.log.Error("reading the journal for the journal report failed", zap.Error(err))
		return &flotillav1.JournalReport{}
	}
	return &flotillav1.JournalReport{Entries: events}
}

// Close stops accepting commands and waits up to ShutdownGrace for the
// running ones; it then cancels those still running and waits up to
// CancelGrace for them to return. Their final events are journaled (and
// sent while the stream is up). It returns an error naming the commands that
// did not return; the next agent process marks them failed.
func (r *Runner) Close() error {
	r.mu.Lock()
	r.closing = true
	runs := make([]*execution, 0, len(r.running))
	for _, x := range r.running {
		runs = append(runs, x)
	}
	r.mu.Unlock()
	if len(runs) == 0 {
		return nil
	}
	r.log.Info("waiting for running commands to finish", zap.Int("commands", len(runs)), zap.Duration("grace", r.cfg.ShutdownGrace))
	if r.waitFor(runs, r.cfg.ShutdownGrace) == nil {
		return nil
	}
	r.log.Warn("cancelling the commands still running at shutdown", zap.Duration("grace", r.cfg.ShutdownGrace))
	for _, x := range runs {
		x.cancel(&cancelled{shutdown: true, grace: r.cfg.ShutdownGrace})
	}
	if stuck := r.waitFor(runs, r.cfg.CancelGrace); stuck != nil {
		return fmt.Errorf("commands: %v did not stop within %v of being cancelled; the next agent start marks them failed", stuck, r.cfg.CancelGrace)
	}
	return nil
}

// waitFor waits up to d for runs to end and returns the IDs of those still
// running.
func (r *Runner) waitFor(runs []*execution, d time.Duration) []string {
	timer := r.cfg.Clock.NewTimer(d)
	defer timer.Stop()
	for i, x := range runs {
		select {
		case <-x.done:
		case <-timer.Chan():
			var ids []string
			for _, y := range runs[i:] {
				select {
				case <-y.done:
				default:
					ids = append(ids, y.cmd.GetId())
				}
			}
			if len(ids) == 0 {
				return nil
			}
			return ids
		}
	}
	return nil
}
