package commands

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
)

// maxEventBatch bounds how many queued events one turn of the event loop
// applies, so that the first of a burst are not held back by the last.
const maxEventBatch = 512

// OnEvent applies an event an agent sent about one of its commands and
// returns once the change is stored and applied (or refused). The agent is
// the one bound to the stream (from its certificate): an event about
// another agent's command is refused, never trusted.
//
// Events are not applied by their callers, one by one, under the
// dispatcher's lock: when a whole fleet answers a command, thousands of
// stream goroutines queued on that lock twice per event, and the lock's
// hand-offs, not the work, set the pace (a 10,000-host fan-out spent 98 %
// of its mutex delay there). Callers queue their event and wait; one event
// loop takes everything queued, computes the changes under one lock,
// stores them in one transaction and applies them, then wakes each caller,
// which tells the listeners about its own change as before.
func (d *Dispatcher) OnEvent(ctx context.Context, agentID string, ev *flotillav1.CommandEvent) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := &pendingEvent{agentID: agentID, ev: ev, done: make(chan struct{})}
	d.events.add(p, d.applyEvents)
	// Once queued, the outcome is waited for whatever happens to ctx: the
	// caller must learn whether the change was stored.
	<-p.done
	switch {
	case p.unknown:
		return d.unknownEvent(ctx, agentID, ev)
	case p.err != nil:
		return p.err
	case p.changed:
		if p.after != nil {
			<-p.after
		}
		d.notify([]Update{p.update})
		close(p.notified)
	}
	return nil
}

// pendingEvent is one caller's event and, once done is closed, its outcome.
type pendingEvent struct {
	agentID string
	ev      *flotillav1.CommandEvent
	done    chan struct{}

	// Set by the event loop before done is closed.
	next    store.HostCommand // the computed change, while it is applied
	persist bool
	unknown bool // not an active command: the caller looks it up
	changed bool // update is the applied change, for the listeners
	update  Update
	err     error
	// after is closed once the listeners know the command's previous
	// change made by an event (nil: nothing to wait for); the caller
	// closes notified once they know this one.
	after, notified chan struct{}
}

// intake queues events for the event loop, which runs only while there is
// something queued, so an idle dispatcher holds no goroutine.
type intake struct {
	mu      sync.Mutex
	queue   []*pendingEvent
	running bool
}

// add queues p and starts the event loop if it is not running.
func (q *intake) add(p *pendingEvent, apply func([]*pendingEvent) []*pendingEvent) {
	q.mu.Lock()
	q.queue = append(q.queue, p)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.run(apply)
	}
}

// run applies the queue in batches until it is empty. apply returns the
// events it put off (a second event of a command already in the batch);
// they go first into the next batch, keeping each command's order.
func (q *intake) run(apply func([]*pendingEvent) []*pendingEvent) {
	var carried []*pendingEvent
	for {
		q.mu.Lock()
		n := min(len(q.queue), maxEventBatch-len(carried)) // carried < maxEventBatch: a batch carries at most all but one
		batch := append(carried, q.queue[:n]...)
		q.queue = q.queue[n:]
		if len(q.queue) == 0 {
			q.queue = nil // let the backing array go
		}
		if len(batch) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		carried = apply(batch)
		for _, p := range batch {
			if !isCarried(carried, p) {
				close(p.done)
			}
		}
	}
}

func isCarried(carried []*pendingEvent, p *pendingEvent) bool {
	for _, c := range carried {
		if c == p {
			return true
		}
	}
	return false
}

// applyEvents is one turn of the event loop: it computes the change of
// every event in batch under one lock, stores those that must be stored in
// one transaction (group commit with the dispatcher's other writes), and
// applies them. A failed write fails the events whose change it held, and
// none of them is applied: their agents resend them. It returns the events
// put off to the next turn.
func (d *Dispatcher) applyEvents(batch []*pendingEvent) (carried []*pendingEvent) {
	ids := make([]string, len(batch))
	for i, p := range batch {
		ids[i] = p.ev.GetCommandId()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// A change of one of these commands may be being stored by another
	// path (release, finish): compute from the state it leaves.
	d.waitIdleLocked(ids)
	now := d.cfg.Now()
	var (
		inBatch = make(map[string]bool, len(batch))
		stored  []store.HostCommand
		changes []*pendingEvent
	)
	for _, p := range batch {
		id := p.ev.GetCommandId()
		if inBatch[id] {
			// Its change must be computed from the one before it, once
			// that is stored and applied.
			carried = append(carried, p)
			continue
		}
		inBatch[id] = true
		hc, ok := d.active[id]
		switch {
		case !ok:
			p.unknown = true
			continue
		case hc.AgentID != p.agentID:
			d.log.Warn("agent sent an event for another agent's command; ignored",
				zap.String("agent", p.agentID), zap.String("command_id", id), zap.String("owner", hc.AgentID))
			p.err = fmt.Errorf("%w: %s is not agent %s's", ErrNotOwner, id, p.agentID)
			continue
		case hc.ReleasedAt.IsZero():
			// Still queued: never sent, so the agent cannot have run it.
			d.log.Warn("agent reported a command that was not sent yet; ignored",
				zap.String("agent", p.agentID), zap.String("command_id", id))
			continue
		}
		next, changed, persist, err := d.next(hc, p.ev, now)
		if err != nil || !changed {
			p.err = err
			continue
		}
		p.next, p.persist = next, persist
		changes = append(changes, p)
		if persist {
			stored = append(stored, next)
		}
	}
	// The commands of the batch are marked as being written meanwhile, so
	// other paths wait for them as for any other write.
	err := d.storeLocked(context.Background(), stored)
	for _, p := range changes {
		if err != nil && p.persist {
			p.err = fmt.Errorf("commands: store event for %s: %w", p.next.ID, err)
			continue
		}
		id := p.next.ID
		if prev := d.notifying[id]; prev != nil && !isClosed(prev) {
			p.after = prev
		}
		p.notified = make(chan struct{})
		d.notifying[id] = p.notified // removed when the command ends (untrack)
		p.update, p.changed = d.applyLocked(p.next, p.ev), true
	}
	return carried
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
