package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// maxTurn bounds how many requests one turn of the owner takes from the
// inbox, so that the first of a burst are not held back by the last.
const maxTurn = 512

// The dispatcher's state (the active commands, by ID and by agent, and the
// pending cancels) belongs to one goroutine, the owner. Every caller, an
// agent's event as much as a new command, a cancel, a reconnect or a sweep,
// puts a request in the inbox and waits for its outcome. The owner takes
// what is queued in turns: it computes the changes of every request of a
// turn from its state, stores them in one transaction, applies them, sends
// what they send, then tells the listeners in order, on its own goroutine,
// so that they see every command's changes in the order they were made.
//
// A transaction costs an fsync, a millisecond or more: when a whole fleet
// answers a command at once, one write per turn instead of one per event
// sets the pace, and no lock is handed from one stream goroutine to the
// next (a 10,000-host fan-out once spent 98 % of its mutex delay there).
//
// The owner runs while the inbox holds something and ends when it is
// empty, so an idle dispatcher holds no goroutine and needs no loop to be
// started before it is used; the inbox's lock hands the state from one
// owner to the next.

// job is what one request asks of the owner.
type job interface {
	// ids are the commands the job's changes are computed from. A job
	// touching a command changed earlier in the same turn waits for the
	// next turn, so that every change is computed from a stored state.
	ids() []string
	// prepare computes the job's changes from the owner's state into r.
	prepare(t *turn, r *request) error
	// apply runs once the job's changes are stored: it applies them
	// (t.apply) and sends what they send.
	apply(t *turn, r *request)
}

// request is one job and, once done, its outcome.
type request struct {
	job     job
	changes []change
	err     error
	// done is closed when the request and everything the listeners asked
	// for because of it are done (nil for a follow-up).
	done chan struct{}
	// then is called on the owner with the outcome of a follow-up.
	then func(error)
}

// persists reports whether one of the request's changes must be stored.
func (r *request) persists() bool {
	for i := range r.changes {
		if r.changes[i].persist {
			return true
		}
	}
	return false
}

// change is the next state of one active command and the event that made
// it.
type change struct {
	next    store.HostCommand
	ev      *flotillav1.CommandEvent
	persist bool // stored before it is applied (progress is only broadcast)
}

// inbox queues requests for the owner.
type inbox struct {
	mu      sync.Mutex
	queue   []*request
	running bool // an owner goroutine is taking the queue
}

// do queues j and waits for its outcome. Once queued, the outcome is
// waited for whatever happens to ctx: the caller must learn whether its
// changes were stored. A ctx already done queues nothing.
func (d *Dispatcher) do(ctx context.Context, j job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{job: j, done: make(chan struct{})}
	d.inbox.mu.Lock()
	d.inbox.queue = append(d.inbox.queue, r)
	start := !d.inbox.running
	d.inbox.running = true
	d.inbox.mu.Unlock()
	if start {
		go d.own()
	}
	<-r.done
	return r.err
}

// own takes the inbox in turns until it is empty. Requests put off by a
// turn go first into the next one, keeping each command's order.
func (d *Dispatcher) own() {
	var carried []*request
	for {
		d.inbox.mu.Lock()
		n := min(len(d.inbox.queue), maxTurn-len(carried)) // a turn carries at most all but one
		batch := append(carried, d.inbox.queue[:n]...)
		d.inbox.queue = d.inbox.queue[n:]
		if len(d.inbox.queue) == 0 {
			d.inbox.queue = nil // let the backing array go
		}
		if len(batch) == 0 {
			d.inbox.running = false
			d.inbox.mu.Unlock()
			return
		}
		d.inbox.mu.Unlock()
		done, put := d.runTurn(batch)
		// What the listeners asked for is done before the callers hear
		// of their requests: a caller sees every consequence of its call.
		for follow := put.followUps; len(follow) > 0; {
			follow = d.runFollowUps(follow)
		}
		for _, r := range done {
			close(r.done)
		}
		carried = put.carried
	}
}

// putOff is what a turn leaves for later.
type putOff struct {
	carried   []*request // touch a command changed in the turn
	followUps []*request // asked for by listeners
}

// runFollowUps runs one turn of follow-ups and returns those to run next.
func (d *Dispatcher) runFollowUps(reqs []*request) []*request {
	done, put := d.runTurn(reqs)
	for _, r := range done {
		if r.then != nil {
			r.then(r.err)
		}
	}
	return append(put.carried, put.followUps...)
}

// turn is one batch of requests being handled by the owner. The owner
// reuses one (Dispatcher.turn) from turn to turn.
type turn struct {
	d   *Dispatcher
	now time.Time
	// changed holds the commands changed (or put off) in this turn.
	changed   map[string]bool
	specs     specDecoder
	updates   []Update
	followUps []*request
}

// runTurn prepares, stores, applies and notifies reqs, and returns those
// it handled and those it put off.
func (d *Dispatcher) runTurn(reqs []*request) (done []*request, put putOff) {
	t := &d.turn
	t.d, t.now, t.specs = d, d.cfg.Now(), specDecoder{}
	if t.changed == nil {
		t.changed = make(map[string]bool)
	}
	clear(t.changed)
	done = make([]*request, 0, len(reqs))
	for _, r := range reqs {
		if t.touchesChanged(r.job.ids()) {
			put.carried = append(put.carried, r)
			continue
		}
		done = append(done, r)
		if err := r.job.prepare(t, r); err != nil {
			r.err, r.changes = err, nil
			continue
		}
		for i := range r.changes {
			t.changed[r.changes[i].next.ID] = true
		}
	}
	err := d.commit(done)
	for _, r := range done {
		switch {
		case r.err != nil:
		case err != nil && r.persists():
			r.err = err
		default:
			r.job.apply(t, r)
		}
	}
	d.notify(t)
	clear(t.updates) // let the commands go
	t.updates = t.updates[:0]
	put.followUps, t.followUps = t.followUps, nil
	return done, put
}

// touchesChanged reports whether one of ids was changed earlier in the
// turn; if so it marks them all, so that later requests on any of them
// wait too.
func (t *turn) touchesChanged(ids []string) bool {
	hit := false
	for _, id := range ids {
		hit = hit || t.changed[id]
	}
	if hit {
		for _, id := range ids {
			t.changed[id] = true
		}
	}
	return hit
}

// commit stores every change of reqs that must be stored, in one
// transaction: either all of them are stored or, when the store fails,
// none is, and each request that had one fails. Each command's change
// carries its fence (replica mode): when the store refuses one, the
// requests under that fence are taken out (see fenced) and the others are
// stored without them.
func (d *Dispatcher) commit(reqs []*request) error {
	for {
		hcs := persisted(reqs)
		events := d.events(reqs)
		if len(hcs) == 0 && len(events) == 0 {
			return nil
		}
		// No deadline and no cancellation: the callers wait for the
		// outcome whatever happens (see do), and the SQLite driver
		// watches a cancellable context with a goroutine per statement,
		// which made each row about 65% slower (13 → 21 µs in a
		// transaction of 1,000). Lock waits are bounded by the store's
		// busy timeout.
		err := d.cfg.Store.UpdateHostCommands(context.Background(), hcs, d.fences, events)
		var fe *store.FencedError
		if errors.As(err, &fe) && d.fenced(reqs, fe.Fence, err) {
			continue // stored without the requests under fe's fence
		}
		if err != nil {
			return fmt.Errorf("commands: store %d command changes: %w", len(hcs), err)
		}
		return nil
	}
}

// persisted returns the changes of reqs that must be stored, of the
// requests that have not failed.
func persisted(reqs []*request) []store.HostCommand {
	n := 0
	for _, r := range reqs {
		for i := range r.changes {
			if r.changes[i].persist && r.err == nil {
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	// Sized once: a turn of a fleet's answers holds hundreds of changes.
	hcs := make([]store.HostCommand, 0, n)
	for _, r := range reqs {
		for i := range r.changes {
			if r.changes[i].persist && r.err == nil {
				hcs = append(hcs, r.changes[i].next)
			}
		}
	}
	return hcs
}

// events returns, in replica mode, the event of every change of reqs (the
// requests that have not failed) to a fleet command's host, progress
// included: stored with the changes, they let watchers on the other
// replicas send each event as the watchers here do (see watchRemote).
// One control plane stores none: its watchers are all here.
func (d *Dispatcher) events(reqs []*request) []store.CommandEvent {
	if !d.cfg.Replica {
		return nil
	}
	var out []store.CommandEvent
	for _, r := range reqs {
		if r.err != nil {
			continue
		}
		for i := range r.changes {
			c := &r.changes[i]
			if c.next.FleetCommandID == "" || c.ev == nil {
				continue
			}
			b, err := proto.Marshal(c.ev)
			if err != nil {
				d.log.Warn("encoding a command event for the other replicas' watchers failed; they miss it", logging.CommandID(c.next.ID), zap.Error(err))
				continue
			}
			out = append(out, store.CommandEvent{FleetCommandID: c.next.FleetCommandID, AgentID: c.next.AgentID, CommandID: c.next.ID,
				Event: b, CreatedAt: d.turn.now})
		}
	}
	return out
}

// fenced handles the store's refusal of the writes under fence: the work's
// lease moved to another replica, which drives its commands from now on.
// The requests with a change under it lose their changes: an agent's
// event is handled as one about a command not held here (OnEvent stores it
// for the new driver), any other request fails with err. Every command
// under the fence is dropped, without writing anything. It reports whether
// a request was taken out (if none was, the refusal was not about these
// requests, and retrying would not help).
func (d *Dispatcher) fenced(reqs []*request, fence store.Fence, err error) bool {
	under := func(id string) bool { f := d.fences[id]; return f != nil && *f == fence }
	took := false
	for _, r := range reqs {
		if r.err != nil || !slices.ContainsFunc(r.changes, func(c change) bool { return under(c.next.ID) }) {
			continue
		}
		took = true
		r.changes = nil
		if ev, ok := r.job.(*eventJob); ok {
			ev.unknown = true
			continue
		}
		r.err = fmt.Errorf("commands: %w", err)
	}
	var dropped []*store.HostCommand
	for id, hc := range d.active {
		if under(id) {
			dropped = append(dropped, hc)
		}
	}
	for _, hc := range dropped {
		d.untrack(hc)
		d.cfg.Metrics.inFlight(hc.Kind, -1)
	}
	d.log.Warn("writes of host commands refused: their work's lease moved to another control plane; dropped here, its new driver goes on with them",
		zap.String("lease", fence.Name), zap.Int64("token", fence.Token), zap.Int("commands", len(dropped)), zap.Error(err))
	return took
}

// notify tells the listeners about the turn's updates, in order.
func (d *Dispatcher) notify(t *turn) {
	for _, u := range t.updates {
		for _, l := range d.listeners {
			l(u, t)
		}
	}
}

// release asks for hosts to be released after the current turn; then is
// called with the outcome. For listeners (see hostOps).
func (t *turn) release(ids []string, timeout time.Duration, then func(error)) {
	t.followUps = append(t.followUps, &request{job: &releaseJob{cmds: ids, timeout: timeout}, then: then})
}

// finish asks for commands to be ended after the current turn; then is
// called with the outcome. For listeners (see hostOps).
func (t *turn) finish(ids []string, state flotillav1.CommandState, message string, then func(error)) {
	t.followUps = append(t.followUps, &request{job: &finishJob{cmds: ids, state: state, message: message}, then: then})
}
