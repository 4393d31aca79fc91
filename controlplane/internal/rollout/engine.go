package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/ids"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/work"
	"flotilla.dev/pkg/logging"
)

// IDPrefix starts every rollout ID, and so every host command ID the
// engine makes.
const IDPrefix = "ro-"

// EngineStore is what the engine keeps: services and rollouts, and the host
// commands whose results move them.
type EngineStore interface {
	store.RolloutStore
	store.CommandStore
}

// Config configures an Engine.
type Config struct {
	// Store keeps services and rollouts; the engine reads host commands
	// (their results) from it too.
	Store      EngineStore
	Registry   *fleet.Registry
	Dispatcher *commands.Dispatcher
	Logger     *zap.Logger
	Metrics    *Metrics
	// NewID makes rollout IDs; ids.New when nil.
	NewID func(prefix string) (string, error)
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// TickInterval is how often a rollout waiting on a health gate is
	// looked at again (default 1s). Command outcomes and operator calls
	// wake it at once.
	TickInterval time.Duration
	// PullConcurrency bounds the image pre-pulls in flight per rollout
	// (default 10).
	PullConcurrency int
	// RetryInterval is the wait after a store failure (default 1s).
	RetryInterval time.Duration
	// MaxHosts bounds the hosts of one rollout (default 10000).
	MaxHosts int
	// ReconnectGrace is how long a start waits for a host whose stream
	// closed less than ReconnectGrace ago (default 10s; negative: no wait)
	// before it plans the host as offline: an agent the rebalancer moved
	// to another replica, or whose replica died, is back within seconds,
	// and a plan made meanwhile would leave it out of the release.
	ReconnectGrace time.Duration

	// Holder is this replica's holder ID (lease.NewHolderID) when several
	// control planes share the store (PostgreSQL): each active rollout is
	// then driven by the one replica holding its lease, "rollout/<id>",
	// and every write of it carries that lease as its fence (see Replica).
	// "" (SQLite, one process) drives every active rollout, with no lease.
	Holder string
	// Leases keeps the rollouts' leases; required with Holder.
	Leases store.LeaseStore
	// LeaseTTL is the rollouts' lease TTL (lease.DefaultTTL when 0): a
	// replica takes an orphaned rollout over within it and a claim
	// interval (a tenth of it).
	LeaseTTL time.Duration
	// WorkMetrics counts the rollouts' leases in replica mode; nil counts
	// nothing.
	WorkMetrics *work.Metrics
	// PrometheusURL is the Prometheus server of the strategies' analysis
	// that name none (the configuration's analysis.prometheus_url); ""
	// refuses a rollout whose analysis names no server.
	PrometheusURL string
	// PollInterval is how often, in replica mode, a watcher reads the
	// store for events written by another replica, and a driver for
	// operators' requests made on another replica (default 500ms).
	PollInterval time.Duration
	// OnStateChange, when set, is called on the rollout's goroutine after
	// each state is stored (the start included), before the step's
	// commands go out; it must return quickly (notifications write their
	// outbox row and return).
	OnStateChange func(ctx context.Context, sc StateChange)
	// OnAnalysisFailed, when set, is called on the rollout's goroutine
	// after an analysis that fails the rollout is stored, like
	// OnStateChange.
	OnAnalysisFailed func(ctx context.Context, f AnalysisFailure)
}

// Engine runs rollouts.
type Engine struct {
	cfg Config
	log *zap.Logger

	mu       sync.Mutex
	runs     map[string]*runner // active rollouts by ID
	runCtx   context.Context    // set while Run runs
	stopped  bool
	pending  []*runner // loaded or started before Run
	wg       sync.WaitGroup
	watchers map[string]map[chan struct{}]struct{}

	// claimer drives the rollouts whose leases this replica holds; nil
	// without Config.Holder.
	claimer *work.Claimer
	// fresh holds rollouts started here until their lease's claim starts
	// them (replica mode), so that a new rollout is not read back.
	fresh map[string]*runner
	// broken lists active rollouts that could not be read: not claimed
	// again (replica mode).
	broken map[string]bool
	// driving lists the rollouts whose lease this replica took and that
	// it drives or is loading (replica mode).
	driving map[string]bool

	// commitHook, when set (tests), runs after each transition is stored
	// and before its commands are sent.
	commitHook func(ctx context.Context, rolloutID string)
}

// New returns an Engine and registers it with the dispatcher. Call Load,
// then Run.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Registry == nil || cfg.Dispatcher == nil {
		return nil, errors.New("rollout: engine needs Store, Registry and Dispatcher")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = ids.New
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = time.Second
	}
	if cfg.PullConcurrency <= 0 {
		cfg.PullConcurrency = 10
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.MaxHosts <= 0 {
		cfg.MaxHosts = 10000
	}
	if cfg.ReconnectGrace == 0 {
		cfg.ReconnectGrace = DefaultReconnectGrace
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, runs: make(map[string]*runner), watchers: make(map[string]map[chan struct{}]struct{})}
	if cfg.Holder != "" {
		if err := e.newClaimer(); err != nil {
			return nil, err
		}
	}
	cfg.Dispatcher.Listen(e.onUpdate)
	return e, nil
}

// Load reads the active rollouts from the store; Run resumes them. Call it
// after the dispatcher's Load, before serving. In replica mode it does
// nothing: Run claims the rollouts whose leases are free.
func (e *Engine) Load(ctx context.Context) error {
	if e.claimer != nil {
		return nil
	}
	recs, err := e.cfg.Store.ListRollouts(ctx, store.RolloutQuery{Active: true})
	if err != nil {
		return fmt.Errorf("rollout: load active rollouts: %w", err)
	}
	for _, rec := range recs {
		r, err := e.loadRunner(ctx, rec)
		if err != nil {
			e.log.Error("active rollout unreadable; left as is", logging.RolloutID(rec.ID), zap.Error(err))
			continue
		}
		e.log.Info("resuming rollout", logging.RolloutID(rec.ID), logging.Service(rec.Service),
			zap.String("state", stateName(flotillav1.RolloutState(rec.State))), zap.Int("hosts", len(r.hosts)))
		e.launch(r)
	}
	return nil
}

func (e *Engine) loadRunner(ctx context.Context, rec store.Rollout) (*runner, error) {
	hosts, err := e.cfg.Store.ListRolloutHosts(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	return newRunner(e, rec, hosts)
}

// Run runs the active rollouts (and those started later) until ctx ends,
// then waits for their runners to stop.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	e.runCtx = ctx
	for _, r := range e.pending {
		e.startLocked(r)
	}
	e.pending = nil
	e.mu.Unlock()
	if e.claimer != nil {
		// Returns once ctx ended and every rollout it drove stopped.
		_ = e.claimer.Run(ctx)
	}
	<-ctx.Done()
	e.mu.Lock()
	e.runCtx, e.stopped = nil, true
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

// launch registers a runner (so that command updates reach it) and starts
// it if Run is running.
func (e *Engine) launch(r *runner) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.runs[r.rec.ID] = r
	switch {
	case e.runCtx != nil:
		e.startLocked(r)
	case !e.stopped:
		e.pending = append(e.pending, r)
	}
}

func (e *Engine) startLocked(r *runner) {
	ctx := e.runCtx
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		r.loop(ctx)
	}()
}

// finished forgets a runner whose rollout ended.
func (e *Engine) finished(r *runner) {
	e.mu.Lock()
	if e.runs[r.rec.ID] == r {
		delete(e.runs, r.rec.ID)
	}
	e.mu.Unlock()
}

func (e *Engine) runner(id string) *runner {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runs[id]
}

// onUpdate routes a host command change to the runner of its rollout. It
// runs on the agent's stream (or the dispatcher's sweeper) and only takes
// note and wakes the runner.
func (e *Engine) onUpdate(u commands.Update) {
	id := u.Command.ID
	if u.Command.FleetCommandID != "" || !strings.HasPrefix(id, IDPrefix) {
		return
	}
	rid, _, ok := strings.Cut(id, ".")
	if !ok {
		return
	}
	if r := e.runner(rid); r != nil {
		r.observe(u.Command)
		r.signal()
	}
}

// Wake makes every runner look at its rollout again now (tests and
// operators' calls use it; the runners also wake on their own).
func (e *Engine) Wake() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.runs {
		r.signal()
	}
}

// subscribe returns a channel signalled whenever the rollout's history grows.
func (e *Engine) subscribe(id string) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	e.mu.Lock()
	m := e.watchers[id]
	if m == nil {
		m = make(map[chan struct{}]struct{})
		e.watchers[id] = m
	}
	m[ch] = struct{}{}
	e.mu.Unlock()
	return ch, func() {
		e.mu.Lock()
		delete(e.watchers[id], ch)
		if len(e.watchers[id]) == 0 {
			delete(e.watchers, id)
		}
		e.mu.Unlock()
	}
}

func (e *Engine) notifyWatchers(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.watchers[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
