package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
)

// ErrLost is wrapped by Run's error when the keeper stopped trusting its
// lease: another holder took it, or it could not be renewed in time.
var ErrLost = errors.New("lease lost")

// Acquire takes the lease, waiting while another holder has it when
// Config.Wait is set; without Wait, a held lease returns an error wrapping
// store.ErrLeaseHeld that names the holder. Once acquired, Run keeps it.
func (k *Keeper) Acquire(ctx context.Context) (store.Lease, error) {
	for {
		start := k.cfg.Clock.Now()
		l, err := k.cfg.Store.AcquireLease(ctx, k.cfg.Name, k.cfg.Holder, k.cfg.TTL)
		if err == nil {
			k.record(l, start)
			k.cfg.Logger.Info("lease acquired", zap.Int64("token", l.Token), zap.Time("expires_at", l.ExpiresAt))
			return l, nil
		}
		if ctx.Err() != nil {
			return store.Lease{}, ctx.Err()
		}
		retry := errors.Is(err, store.ErrLeaseHeld) || errors.Is(err, store.ErrUnavailable)
		if !k.cfg.Wait || !retry {
			return store.Lease{}, fmt.Errorf("lease %q: %w", k.cfg.Name, err)
		}
		k.cfg.Logger.Info("waiting for the lease", zap.Error(err))
		if err := k.sleep(ctx, k.cfg.RetryInterval); err != nil {
			return store.Lease{}, err
		}
	}
}

// Run acquires the lease if Acquire has not, then renews it every
// RenewInterval until ctx ends, when it releases the lease and returns nil. It
// returns an error wrapping ErrLost as soon as another holder has the
// lease, or once a renewal has not succeeded by the end of the safe window
// (the last successful request's start plus TTL minus Margin); transient
// errors are retried every RetryInterval within that window.
func (k *Keeper) Run(ctx context.Context) error {
	if _, held := k.Lease(); !held {
		if _, err := k.Acquire(ctx); err != nil {
			return err
		}
	}
	for {
		l, _ := k.Lease()
		if err := k.sleep(ctx, k.nextRenewal().Sub(k.cfg.Clock.Now())); err != nil {
			break
		}
		if err := k.renewWithinWindow(ctx, l); err != nil {
			if ctx.Err() != nil {
				break
			}
			k.drop()
			k.cfg.Logger.Error("lease lost: stop driving its work", zap.Error(err))
			return err
		}
	}
	l, _ := k.Lease()
	k.release(ctx, l)
	return nil
}

// nextRenewal is RenewInterval after the last successful request.
func (k *Keeper) nextRenewal() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.validUntil.Add(-(k.cfg.TTL - k.cfg.Margin)).Add(k.cfg.RenewInterval)
}

// renewWithinWindow renews l, retrying transient errors, until it succeeds
// or the safe window closes.
func (k *Keeper) renewWithinWindow(ctx context.Context, l store.Lease) error {
	for {
		left := k.windowLeft()
		if left <= 0 {
			return fmt.Errorf("lease %q: %w: not renewed within %s of the last renewal", k.cfg.Name, ErrLost, k.cfg.TTL-k.cfg.Margin)
		}
		err := k.renewOnce(ctx, l, left)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrLeaseHeld):
			return fmt.Errorf("lease %q: %w: %w", k.cfg.Name, ErrLost, err)
		case ctx.Err() != nil:
			return ctx.Err()
		}
		left = k.windowLeft()
		if left <= 0 {
			return fmt.Errorf("lease %q: %w: not renewed within %s of the last renewal: %w", k.cfg.Name, ErrLost, k.cfg.TTL-k.cfg.Margin, err)
		}
		k.cfg.Logger.Warn("lease renewal failed; retrying", zap.Error(err), zap.Duration("left", left))
		if err := k.sleep(ctx, min(k.cfg.RetryInterval, left)); err != nil {
			return err
		}
	}
}

// windowLeft is how long the keeper may still trust its lease.
func (k *Keeper) windowLeft() time.Duration {
	k.mu.Lock()
	validUntil := k.validUntil
	k.mu.Unlock()
	return validUntil.Sub(k.cfg.Clock.Now())
}

// errRenewalTimedOut is the error of a renewal still unanswered when the
// safe window closed.
var errRenewalTimedOut = errors.New("renewal unanswered when the safe window closed")

// renewOnce sends one renewal and waits for it at most left on the local
// clock; a renewal left waiting is cancelled.
func (k *Keeper) renewOnce(ctx context.Context, l store.Lease, left time.Duration) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		lease store.Lease
		err   error
	}
	done := make(chan result, 1)
	start := k.cfg.Clock.Now()
	go func() {
		renewed, err := k.cfg.Store.RenewLease(rctx, l.Name, l.Holder, l.Token, k.cfg.TTL)
		done <- result{renewed, err}
	}()
	timer := k.cfg.Clock.NewTimer(left)
	defer timer.Stop()
	var r result
	timedOut := false
	select {
	case r = <-done:
	case <-timer.Chan():
		// Cancel the renewal, but take its answer if it came meanwhile:
		// a success still counts from start.
		cancel()
		r, timedOut = <-done, true
	}
	if r.err == nil {
		k.record(r.lease, start)
		return nil
	}
	if timedOut && !errors.Is(r.err, store.ErrLeaseHeld) {
		return fmt.Errorf("%w: %w", errRenewalTimedOut, r.err)
	}
	return r.err
}

// sleep waits d on the local clock, or until ctx ends (its error).
func (k *Keeper) sleep(ctx context.Context, d time.Duration) error {
	timer := k.cfg.Clock.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.Chan():
		return nil
	}
}

// release gives the lease up so that another process need not wait for it
// to expire; a failure only means the lease expires on its own.
func (k *Keeper) release(ctx context.Context, l store.Lease) {
	k.drop()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := k.cfg.Store.ReleaseLease(rctx, l.Name, l.Holder, l.Token); err != nil {
		k.cfg.Logger.Warn("lease not released; it will expire", zap.Error(err))
		return
	}
	k.cfg.Logger.Info("lease released", zap.Int64("token", l.Token))
}

// Release gives the lease up now, if the keeper still holds it: for a
// process that acquired it but stops without running Run (Run releases it
// itself when its context ends).
func (k *Keeper) Release(ctx context.Context) {
	if l, held := k.Lease(); held {
		k.release(ctx, l)
	}
}
