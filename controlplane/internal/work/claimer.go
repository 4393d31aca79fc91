package work

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/lease"
	"flotilla.dev/controlplane/internal/store"
)

// StartFunc drives one piece of work under its lease. It runs in a goroutine
// of its own and returns when the work finished, or at once when ctx ends
// (the lease was lost, or the claimer stops); the claimer releases the lease
// when it returns. Every write it makes carries store.FenceOf(l).
type StartFunc func(ctx context.Context, id string, l store.Lease)

// Config configures a Claimer.
type Config struct {
	// Store keeps the leases.
	Store store.LeaseStore
	// Kind names the kind of work ("rollout", "command"): leases are named
	// "<Kind>/<id>", and metrics are labelled with it.
	Kind string
	// Holder identifies this process (lease.NewHolderID). Required.
	Holder string
	// TTL is the leases' TTL; lease.DefaultTTL when 0.
	TTL time.Duration
	// Margin is how long before a lease could expire the claimer stops
	// the work when it cannot renew; TTL/5 when 0 (see lease.Config).
	Margin time.Duration
	// ClaimInterval is how often the candidates are listed and the free
	// ones claimed; TTL/10 when 0, so that an orphaned piece is taken
	// within a tenth of the TTL of its lease's expiry (a takeover after a
	// SIGKILL then takes at most TTL*1.1: 11 s at the default). Listing
	// the candidates is one indexed query per kind.
	ClaimInterval time.Duration
	// Candidates lists the pieces of work that need a driver (e.g. the
	// active rollouts' IDs). Required.
	Candidates func(ctx context.Context) ([]string, error)
	// Start drives a piece of work once its lease is taken. Required.
	Start StartFunc
	// LogField names a piece of work in logs (e.g. logging.RolloutID);
	// zap.String("<Kind>_id", id) when nil.
	LogField func(id string) zap.Field
	// Clock is the local clock; the process's when nil.
	Clock clockwork.Clock
	// Logger receives claims, losses and failures; nothing is logged when nil.
	Logger  *zap.Logger
	Metrics *Metrics
}

// Claimer drives the pieces of work of one kind whose leases it holds; see
// the package comment. Its methods are safe for concurrent use.
type Claimer struct {
	cfg  Config
	poke chan struct{}

	mu      sync.Mutex
	runCtx  context.Context // set while Run runs
	stopped bool
	items   map[string]*item
	wg      sync.WaitGroup
}

// item is a piece of work this claimer drives.
type item struct {
	id     string
	keeper *lease.Keeper
	lease  store.Lease
	cancel context.CancelFunc
	done   chan struct{}
}

// New validates cfg, fills its defaults and returns a claimer that holds
// nothing yet.
func New(cfg Config) (*Claimer, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("work claimer: store: required")
	case cfg.Kind == "":
		return nil, errors.New("work claimer: kind: required")
	case cfg.Holder == "":
		return nil, errors.New("work claimer: holder: required")
	case cfg.Candidates == nil:
		return nil, errors.New("work claimer: candidates: required")
	case cfg.Start == nil:
		return nil, errors.New("work claimer: start: required")
	case cfg.TTL < 0 || cfg.ClaimInterval < 0:
		return nil, fmt.Errorf("work claimer: ttl (%s) and claim interval (%s) must not be negative", cfg.TTL, cfg.ClaimInterval)
	}
	if cfg.TTL == 0 {
		cfg.TTL = lease.DefaultTTL
	}
	if cfg.Margin == 0 {
		cfg.Margin = cfg.TTL / 5
	}
	if cfg.ClaimInterval == 0 {
		cfg.ClaimInterval = cfg.TTL / 10
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.LogField == nil {
		key := cfg.Kind + "_id"
		cfg.LogField = func(id string) zap.Field { return zap.String(key, id) }
	}
	// A keeper validates the lease settings once, here.
	if _, err := lease.New(keeperConfig(cfg, "x", nil)); err != nil {
		return nil, fmt.Errorf("work claimer: %w", err)
	}
	cfg.Metrics.kind(cfg.Kind)
	return &Claimer{cfg: cfg, poke: make(chan struct{}, 1), items: make(map[string]*item)}, nil
}

// keeperConfig is the lease.Config of the piece of work id.
func keeperConfig(cfg Config, id string, log *zap.Logger) lease.Config {
	return lease.Config{Store: cfg.Store, Name: LeaseName(cfg.Kind, id), Holder: cfg.Holder, TTL: cfg.TTL,
		Margin: cfg.Margin, Clock: cfg.Clock, Logger: log}
}

// LeaseName is the name of the lease of a piece of work: "<kind>/<id>".
func LeaseName(kind, id string) string { return kind + "/" + id }

// Holder is this claimer's holder ID.
func (c *Claimer) Holder() string { return c.cfg.Holder }

// Run claims work every ClaimInterval (and at once when it starts, or when
// Poke asks) until ctx ends; then it stops every piece it drives, waits for
// them and releases their leases, and returns nil.
func (c *Claimer) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped || c.runCtx != nil {
		c.mu.Unlock()
		return errors.New("work claimer: Run called twice")
	}
	c.runCtx = ctx
	c.mu.Unlock()
	ticker := c.cfg.Clock.NewTicker(c.cfg.ClaimInterval)
	defer ticker.Stop()
	for {
		c.claimPass(ctx)
		select {
		case <-ctx.Done():
		case <-ticker.Chan():
			continue
		case <-c.poke:
			continue
		}
		break
	}
	c.mu.Lock()
	c.runCtx, c.stopped = nil, true
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// Poke makes Run look for work now rather than at its next tick.
func (c *Claimer) Poke() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// claimPass lists the candidates and claims those this claimer does not
// drive.
func (c *Claimer) claimPass(ctx context.Context) {
	ids, err := c.cfg.Candidates(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.cfg.Logger.Warn("listing work to claim failed; retrying at the next tick", zap.String("kind", c.cfg.Kind),
				zap.Error(err), zap.Duration("retry_in", c.cfg.ClaimInterval))
		}
		return
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		// Bounded: a database that does not answer must not hold up the
		// passes (the lease's window counts from the request's start).
		actx, cancel := context.WithTimeout(ctx, c.cfg.TTL)
		_, err := c.Claim(actx, id)
		cancel()
		if err != nil && !errors.Is(err, store.ErrLeaseHeld) && ctx.Err() == nil {
			c.cfg.Logger.Warn("claiming work failed; retrying at the next tick", c.cfg.LogField(id), zap.Error(err))
		}
	}
}

// Claim takes the lease of one piece of work now, without waiting, and
// starts it. It returns true when this claimer drives the work (it already
// did, or it took the lease), false with an error wrapping
// store.ErrLeaseHeld when another holder has it, and false without an
// error when Run is not running (its first pass claims the work).
func (c *Claimer) Claim(ctx context.Context, id string) (bool, error) {
	c.mu.Lock()
	_, held := c.items[id]
	running := c.runCtx != nil
	c.mu.Unlock()
	if held {
		return true, nil
	}
	if !running {
		return false, nil
	}
	log := c.cfg.Logger.With(c.cfg.LogField(id))
	k, err := lease.New(keeperConfig(c.cfg, id, log))
	if err != nil {
		return false, err
	}
	l, err := k.Acquire(ctx)
	if err != nil {
		return false, err
	}
	return c.launch(id, k, l, log), nil
}

// launch starts the work under the lease just acquired, unless Run stopped
// or another Claim of the same work won meanwhile (then the lease is kept
// by that one, being the same holder's).
func (c *Claimer) launch(id string, k *lease.Keeper, l store.Lease, log *zap.Logger) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[id]; ok {
		return true
	}
	if c.runCtx == nil {
		k.Release(context.Background())
		return false
	}
	ctx, cancel := context.WithCancel(c.runCtx)
	it := &item{id: id, keeper: k, lease: l, cancel: cancel, done: make(chan struct{})}
	c.items[id] = it
	takeover := l.Token > 1
	c.cfg.Metrics.claimed(c.cfg.Kind, takeover)
	log.Info("work claimed", zap.String("kind", c.cfg.Kind), zap.Int64("token", l.Token), zap.Bool("takeover", takeover))
	c.wg.Add(2)
	go c.keep(ctx, it, log)
	go c.drive(ctx, it)
	return true
}

// keep renews the item's lease until the work returns; when the lease is
// lost it stops the work.
func (c *Claimer) keep(ctx context.Context, it *item, log *zap.Logger) {
	defer c.wg.Done()
	// The keeper outlives ctx: it releases the lease only once the work
	// has stopped writing.
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		<-it.done
		stop()
	}()
	err := it.keeper.Run(kctx)
	lost := err != nil
	if lost {
		log.Error("work lease lost; stopping the work", zap.String("kind", c.cfg.Kind), zap.Error(err))
		it.cancel()
		<-it.done
	}
	stop()
	c.mu.Lock()
	if c.items[it.id] == it {
		delete(c.items, it.id)
	}
	c.mu.Unlock()
	c.cfg.Metrics.ended(c.cfg.Kind, lost)
}

// drive runs the work and marks it done.
func (c *Claimer) drive(ctx context.Context, it *item) {
	defer c.wg.Done()
	defer close(it.done)
	defer it.cancel()
	c.cfg.Start(ctx, it.id, it.lease)
}

// Fence returns the fence the writes of a piece of work carry, and whether
// this claimer drives it. The fence stays the same while the lease is held
// (renewals keep the token); the store refuses it once the lease moved or
// expired.
func (c *Claimer) Fence(id string) (*store.Fence, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.items[id]
	if !ok {
		return nil, false
	}
	return store.FenceOf(it.lease), true
}

// Held returns the IDs of the pieces of work this claimer drives, sorted.
func (c *Claimer) Held() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.items))
	for id := range c.items {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
