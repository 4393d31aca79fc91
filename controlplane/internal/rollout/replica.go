package rollout

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/work"
	"flotilla.dev/pkg/logging"
)

// LeaseKind is the kind of the rollouts' work leases: "rollout/<id>".
const LeaseKind = "rollout"

// Replica mode (Config.Holder set): several control planes share the
// store, and each active rollout is driven by the replica holding its
// lease. A work.Claimer lists the active rollouts, claims those whose lease
// is free (a new one at once, in StartRollout; an orphaned one within the
// lease's TTL and a claim interval) and runs their runners under the
// lease; the runner's writes carry its fence, and a write refused as
// fenced, or a lease lost, stops the runner at once. The rollout's state,
// hosts and gate timers (StepStartedAt, BatchStartedAt, BatchFinishedAt)
// are all in the store, so the replica that takes it over resumes it where
// it stood. Operators' requests made on another replica go through the
// store (control.go), and watchers read the events from the store.

// newClaimer builds the claimer of the rollouts' leases.
func (e *Engine) newClaimer() error {
	if e.cfg.Leases == nil {
		return errors.New("rollout: engine in replica mode (Holder set) needs Leases")
	}
	c, err := work.New(work.Config{
		Store: e.cfg.Leases, Kind: LeaseKind, Holder: e.cfg.Holder, TTL: e.cfg.LeaseTTL,
		Candidates: e.candidates, Start: e.drive, LogField: logging.RolloutID,
		Logger: e.log.Named("leases"), Metrics: e.cfg.WorkMetrics,
	})
	if err != nil {
		return fmt.Errorf("rollout: %w", err)
	}
	e.claimer, e.fresh, e.broken, e.driving = c, make(map[string]*runner), make(map[string]bool), make(map[string]bool)
	return nil
}

// Driving lists the rollouts this replica drives (replica mode), sorted.
func (e *Engine) Driving() []string {
	if e.claimer == nil {
		return nil
	}
	return e.claimer.Held()
}

// candidates lists the active rollouts that can be driven.
func (e *Engine) candidates(ctx context.Context) ([]string, error) {
	recs, err := e.cfg.Store.ListRollouts(ctx, store.RolloutQuery{Active: true})
	if err != nil {
		return nil, fmt.Errorf("list active rollouts: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(recs))
	for _, rec := range recs {
		if !e.broken[rec.ID] {
			ids = append(ids, rec.ID)
		}
	}
	return ids, nil
}

// drive runs one rollout under its lease l until it finishes, its lease is
// lost (ctx ends) or a write of it is refused as fenced.
func (e *Engine) drive(ctx context.Context, id string, l store.Lease) {
	r := e.takeFresh(id)
	defer func() {
		e.mu.Lock()
		delete(e.driving, id)
		e.mu.Unlock()
	}()
	if r == nil {
		var err error
		if r, err = e.loadLeased(ctx, id, l); err != nil || r == nil {
			return
		}
	}
	r.fence = store.FenceOf(l)
	e.mu.Lock()
	e.runs[id] = r
	e.mu.Unlock()
	r.loop(ctx)
	e.finished(r)
	if !Terminal(flotillav1.RolloutState(r.rec.State)) {
		r.forgetMetrics()
		r.log.Info("stopped driving the rollout", zap.Bool("fenced", r.fenced), zap.Bool("lease_lost", ctx.Err() != nil))
	}
}

// takeFresh marks a rollout as driven here and returns its runner if it
// was started here (nil: it is read from the store).
func (e *Engine) takeFresh(id string) *runner {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.driving[id] = true
	r := e.fresh[id]
	delete(e.fresh, id)
	return r
}

// dropFresh forgets the runner of a rollout started here that another
// replica claimed first.
func (e *Engine) dropFresh(id string) {
	e.mu.Lock()
	r := e.fresh[id]
	delete(e.fresh, id)
	e.mu.Unlock()
	if r != nil {
		r.forgetMetrics()
	}
}

// loadLeased reads a rollout whose lease this replica just took; nil
// without an error when it has finished meanwhile.
func (e *Engine) loadLeased(ctx context.Context, id string, l store.Lease) (*runner, error) {
	rec, err := e.cfg.Store.GetRollout(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("reading a claimed rollout failed; retrying at the next claim", logging.RolloutID(id), zap.Error(err))
		}
		return nil, err
	}
	if !rec.FinishedAt.IsZero() {
		return nil, nil
	}
	r, err := e.loadRunner(ctx, rec)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		if !errors.Is(err, store.ErrUnavailable) {
			e.mu.Lock()
			e.broken[id] = true
			e.mu.Unlock()
		}
		e.log.Error("active rollout unreadable; left as is", logging.RolloutID(id), zap.Error(err))
		return nil, err
	}
	e.log.Info("resuming rollout", logging.RolloutID(id), logging.Service(rec.Service),
		zap.String("state", stateName(flotillav1.RolloutState(rec.State))), zap.Int("hosts", len(r.hosts)),
		zap.Int64("lease_token", l.Token), zap.Bool("takeover", l.Token > 1))
	return r, nil
}

// claimNew hands a rollout just stored to this replica's claimer, which
// starts it at once under its new lease; before Run, its first claim does.
func (e *Engine) claimNew(ctx context.Context, r *runner) {
	id := r.rec.ID
	e.mu.Lock()
	if e.driving[id] {
		// A claim pass was quicker and read the rollout from the store.
		e.mu.Unlock()
		r.forgetMetrics()
		return
	}
	e.fresh[id] = r
	e.mu.Unlock()
	ok, err := e.claimer.Claim(ctx, id)
	switch {
	case ok:
	case err != nil:
		// Another replica's claim pass won (it drives the rollout), or the
		// store failed (a claim pass takes it, from the store).
		e.dropFresh(id)
		r.log.Info("the new rollout is claimed by a claim pass instead", zap.Error(err))
	}
}

// forgetMetrics takes a runner that stops without finishing its rollout
// out of the gauges: the replica that takes it over counts it.
func (r *runner) forgetMetrics() {
	m := r.e.cfg.Metrics
	for _, h := range r.hosts {
		m.hostSteps(flotillav1.HostStep(h.Step), flotillav1.HostStep_HOST_STEP_UNSPECIFIED, -1)
	}
	m.rolloutState(flotillav1.RolloutState(r.rec.State), flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED)
}
