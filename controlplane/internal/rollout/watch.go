package rollout

import (
	"context"
	"fmt"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// watchPage bounds the events read from the store at a time.
const watchPage = 500

// WatchRollout sends every event of a rollout from the first, stored ones
// then live ones, and returns once the event of its final state was sent.
// Events are always read from the store, so a watcher never misses or
// repeats one, however slow it is; in replica mode the store is also read
// every PollInterval, for the events another replica wrote.
func (e *Engine) WatchRollout(ctx context.Context, id string, send func(*flotillav1.RolloutEvent) error) error {
	if _, err := e.getRollout(ctx, id); err != nil {
		return err
	}
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
	var last int64
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
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-notify:
		case <-poll:
		}
	}
}
