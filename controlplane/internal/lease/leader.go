package lease

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Leader keeps trying to hold one lease, for work that one process of
// several does at a time (e.g. the replicas' "fleet" jobs): unlike a
// Keeper's Run, losing the lease does not end Run, which only stops
// leading and tries to acquire the lease again, every RetryInterval.
type Leader struct {
	cfg   Config      // as given; each term's keeper fills in the defaults
	log   *zap.Logger // the keepers' logger
	retry time.Duration

	mu      sync.Mutex
	keeper  *Keeper // the keeper of the current term; nil when not leading
	first   *Keeper // a first term taken by Acquire, for Run to keep
	changed func(leading bool)
}

// NewLeader validates cfg as New does (Wait is implied) and returns a
// Leader that has not acquired anything yet.
func NewLeader(cfg Config) (*Leader, error) {
	cfg.Wait = true
	k, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return &Leader{cfg: cfg, log: k.cfg.Logger, retry: k.cfg.RetryInterval}, nil
}

// OnChange makes Run call f (from its goroutine) when this process starts
// or stops leading. Call it before Run.
func (l *Leader) OnChange(f func(leading bool)) { l.changed = f }

// Leading reports whether the lease is held and still inside its safe
// window (see Keeper.Lease).
func (l *Leader) Leading() bool {
	l.mu.Lock()
	k := l.keeper
	l.mu.Unlock()
	if k == nil {
		return false
	}
	_, held := k.Lease()
	return held
}

// Run acquires the lease, waiting while another process holds it, keeps
// it until it is lost, and starts over, until ctx ends; it then releases
// the lease and returns nil.
func (l *Leader) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		k, err := l.term(ctx)
		if err != nil {
			return err // validated by NewLeader: not expected
		}
		// A first term taken by Acquire is held already (unless it lapsed).
		if _, held := k.Lease(); !held {
			if _, err := k.Acquire(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				l.log.Warn("could not acquire the lease; retrying", zap.Error(err))
				if err := k.sleep(ctx, l.retry); err != nil {
					break
				}
				continue
			}
		}
		l.setTerm(k)
		err = k.Run(ctx) // renews until lost (an error) or ctx ends (nil, released)
		l.setTerm(nil)
		if err == nil || ctx.Err() != nil {
			break
		}
		if !errors.Is(err, ErrLost) {
			l.log.Warn("lease keeper stopped", zap.Error(err))
		}
		l.log.Warn("lost the lease; will try to take it again", zap.Error(err))
		if err := k.sleep(ctx, l.retry); err != nil {
			break
		}
	}
	return nil
}

// Acquire takes the lease now for a first term, without waiting while
// another process holds it (an error naming it); Run then keeps that term
// going. For a lease this process must hold before it serves.
func (l *Leader) Acquire(ctx context.Context) error {
	cfg := l.cfg
	cfg.Wait = false
	k, err := New(cfg)
	if err != nil {
		return err
	}
	if _, err := k.Acquire(ctx); err != nil {
		return err
	}
	k.cfg.Wait = true // a lapsed first term is taken again by Run
	l.mu.Lock()
	l.first = k
	l.mu.Unlock()
	return nil
}

// Release gives up a first term taken by Acquire that Run never kept (a
// process that stops before it serves); Run releases its own terms.
func (l *Leader) Release(ctx context.Context) {
	l.mu.Lock()
	k := l.first
	l.first = nil
	l.mu.Unlock()
	if k != nil {
		k.Release(ctx)
	}
}

// term returns the keeper of the next term: the one Acquire took, once,
// or a new one.
func (l *Leader) term(context.Context) (*Keeper, error) {
	l.mu.Lock()
	k := l.first
	l.first = nil
	l.mu.Unlock()
	if k != nil {
		return k, nil
	}
	return New(l.cfg)
}

// setTerm records the keeper of a new term, or nil when it ended.
func (l *Leader) setTerm(k *Keeper) {
	l.mu.Lock()
	l.keeper = k
	l.mu.Unlock()
	if l.changed != nil {
		l.changed(k != nil)
	}
}
