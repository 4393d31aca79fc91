package rollout

import (
	"context"
	"fmt"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
)

// watchPage bounds the events read from the store at a time.
const watchPage = 500

// WatchRollout sends every event of a rollout from the first, stored ones
// then live ones, and returns once the event of its final state was sent.
// Events are always read from the store, so a watcher never misses or
// repeats one, however slow it is; in replica mode the store is also read
// every PollInterval, for the events another replica wrote.
func (e *Engine) WatchRollout(ctx context.Context, id string, send func(*flotillav1.RolloutEvent) error) error {
	return e.WatchRolloutAfter(ctx, id, 0, send)
}

// WatchRolloutAfter is WatchRollout from the event after sequence after on:
// a watcher that lost its stream re-attaches without the events it has. A
// rollout that had ended when the call came, with no event after after,
// returns at once.
func (e *Engine) WatchRolloutAfter(ctx context.Context, id string, after int64, send func(*flotillav1.RolloutEvent) error) error {
	if after < 0 {
		return fault.Invalid("after_sequence", "%d is negative; 0 watches from the first event", after)
	}
	rec, err := e.getRollout(ctx, id)
	if err != nil {
		return err
	}
	ended := !rec.FinishedAt.IsZero()
	// Subscribe before reading, so nothing stored in between goes unnoticed.
	notify, cancel := e.subscribe(id)
	defer cancel()
	var poll <-chan time.Time
	if e.claimer != nil {
		// Another replica may drive the rollout: its events reach this one
		// through the store only.
		ticker := time.NewTicker(e.cfg.PollInterval)
		defer ticker.Stop()
		poll = ticker.C
	}
	last := after
	for {
		for {
			evs, err := e.cfg.Store.ListRolloutEvents(ctx, id, last, watchPage)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return unavailable(err, "reading the rollout's events failed")
			}
			for _, sev := range evs {
				ev, err := eventProto(sev)
				if err != nil {
					return fmt.Errorf("event %d of rollout %s is unreadable", sev.Sequence, id)
				}
				if err := send(ev); err != nil {
					return err
				}
				last = sev.Sequence
				if Terminal(ev.GetState().GetState()) {
					return nil
				}
			}
			if len(evs) < watchPage {
				break
			}
		}
		if ended {
			// Every event of an ended rollout was stored before it
			// ended, and the watcher has them all.
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-notify:
		case <-poll:
		}
	}
}
