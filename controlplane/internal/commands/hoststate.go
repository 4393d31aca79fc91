package commands

import (
	"fmt"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// The host command state machine: what an event makes of an active
// command, and the jobs that read or change the active commands without
// sending anything (track, finish, get). Everything here runs on the
// dispatcher's owner goroutine.

// track makes hc active; its writes carry fence (nil: none).
func (d *Dispatcher) track(hc *store.HostCommand, fence *store.Fence) {
	d.active[hc.ID] = hc
	if fence != nil {
		d.fences[hc.ID] = fence
	}
	m := d.byAgent[hc.AgentID]
	if m == nil {
		m = make(map[string]*store.HostCommand)
		d.byAgent[hc.AgentID] = m
	}
	m[hc.ID] = hc
}

func (d *Dispatcher) untrack(hc *store.HostCommand) {
	delete(d.active, hc.ID)
	delete(d.cancels, hc.ID)
	delete(d.fences, hc.ID)
	if m := d.byAgent[hc.AgentID]; m != nil {
		delete(m, hc.ID)
		if len(m) == 0 {
			delete(d.byAgent, hc.AgentID)
		}
	}
}

// next returns what ev makes of hc at now: the next state, whether it is
// a change at all, and whether it must be stored before it is applied.
func next(hc *store.HostCommand, ev *flotillav1.CommandEvent, now time.Time) (c change, changed bool, err error) {
	from, to := flotillav1.CommandState(hc.State), ev.GetState()
	if to == flotillav1.CommandState_COMMAND_STATE_UNSPECIFIED || to == flotillav1.CommandState_COMMAND_STATE_PENDING || command.Rank(to) < command.Rank(from) {
		return change{}, false, nil
	}
	next := *hc
	next.State = int32(to)
	if ev.GetMessage() != "" {
		next.Message = ev.GetMessage()
	}
	// A command that succeeded ran, even when its RUNNING event was never
	// seen (an agent's journal may replay only the outcome).
	if (to == flotillav1.CommandState_COMMAND_STATE_RUNNING || to == flotillav1.CommandState_COMMAND_STATE_SUCCEEDED) && next.StartedAt.IsZero() {
		next.StartedAt = now
	}
	if r := ev.GetResult(); r != nil {
		b, err := proto.Marshal(r)
		if err != nil {
			return change{}, false, fmt.Errorf("commands: encode result: %w", err)
		}
		next.Result = b
	}
	if command.Terminal(to) {
		next.FinishedAt = now
	}
	// Progress within RUNNING changes only the message: it is broadcast,
	// not stored, so a chatty pull does not write on every layer.
	return change{next: next, ev: ev, persist: from != to || command.Terminal(to)}, true, nil
}

// apply makes c, stored if it had to be, the state of its command, and
// queues the update for the listeners. It returns the command's state in
// the dispatcher (no longer tracked if c ended it).
func (t *turn) apply(c change) *store.HostCommand {
	d := t.d
	hc := d.active[c.next.ID]
	from, to := flotillav1.CommandState(hc.State), flotillav1.CommandState(c.next.State)
	setKeepingSent(hc, c.next)
	if command.Terminal(to) {
		d.untrack(hc)
		d.cfg.Metrics.finished(*hc)
		d.log.Info("command finished", logging.CommandID(hc.ID), logging.AgentID(hc.AgentID),
			zap.String("kind", hc.Kind), zap.String("state", command.StateName(to)), zap.String("message", hc.Message))
	} else if from != to {
		d.log.Debug("command state changed", logging.CommandID(hc.ID), logging.AgentID(hc.AgentID),
			zap.String("state", command.StateName(to)))
	}
	t.updates = append(t.updates, Update{Command: *hc, Event: c.ev})
	return hc
}

// setKeepingSent sets *hc to next but keeps a later SentAt: a reconnect
// earlier in the turn may have resent the command after next was
// computed.
func setKeepingSent(hc *store.HostCommand, next store.HostCommand) {
	if hc.SentAt.After(next.SentAt) {
		next.SentAt = hc.SentAt
	}
	*hc = next
}

// applyAll applies every change of r.
func (t *turn) applyAll(r *request) {
	for i := range r.changes {
		t.apply(r.changes[i])
	}
}

// trackJob adds host commands just created in the store (or read from
// it). The released ones are sent to their agents whose streams are here,
// with the cancels requested: an agent that attached before the
// dispatcher held a command was not sent it (the attach found nothing to
// send, and the relay leaves alone the commands held here), and a command
// read from the store may never have reached its agent (its driver
// stopped between storing the release and sending it). A resend is
// harmless: the agent's journal answers it with its outcome. With
// sendReleased (commands created released), they are also reported as
// Release reports them.
type trackJob struct {
	hcs          []store.HostCommand
	sendReleased bool
	fence        *store.Fence
}

func (j *trackJob) ids() []string                 { return nil }
func (j *trackJob) prepare(*turn, *request) error { return nil }

func (j *trackJob) apply(t *turn, _ *request) {
	for i := range j.hcs {
		hc := j.hcs[i]
		t.hold(&hc, j.fence)
		if !j.sendReleased || hc.ReleasedAt.IsZero() {
			continue
		}
		t.updates = append(t.updates, Update{Command: hc, Event: &flotillav1.CommandEvent{
			CommandId: hc.ID, State: flotillav1.CommandState(hc.State), Message: hc.Message, At: timestamppb.New(hc.ReleasedAt)}})
	}
}

// hold makes hc active (see track) and, if it is released, sends it to its
// agent if the agent's stream is here, with its requested cancel.
func (t *turn) hold(hc *store.HostCommand, fence *store.Fence) {
	d := t.d
	d.track(hc, fence)
	d.cfg.Metrics.inFlight(hc.Kind, 1)
	if hc.ReleasedAt.IsZero() {
		return
	}
	t.send(hc)
	if hc.CancelReason != "" {
		d.cancels[hc.ID] = hc.CancelReason
		d.sendCancel(hc, hc.CancelReason)
	}
}

// finishJob ends active commands from the control plane's side (see
// Dispatcher.Finish).
type finishJob struct {
	cmds    []string
	state   flotillav1.CommandState
	message string
}

func (j *finishJob) ids() []string { return j.cmds }

func (j *finishJob) prepare(t *turn, r *request) error {
	return t.finishChanges(r, j.cmds, j.state, j.message)
}

func (j *finishJob) apply(t *turn, r *request) { t.applyAll(r) }

// finishChanges adds to r the change that ends each active command of ids
// (once, however often it is given) with state and message.
func (t *turn) finishChanges(r *request, ids []string, state flotillav1.CommandState, message string) error {
	at := timestamppb.New(t.now)
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		hc, ok := t.d.active[id]
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		c, changed, err := next(hc, &flotillav1.CommandEvent{CommandId: id, State: state, Message: message, At: at}, t.now)
		if err != nil {
			return err
		}
		if changed {
			r.changes = append(r.changes, c)
		}
	}
	return nil
}

// getJob reads an active command.
type getJob struct {
	id string
	hc store.HostCommand
	ok bool
}

func (j *getJob) ids() []string                 { return nil }
func (j *getJob) prepare(*turn, *request) error { return nil }

func (j *getJob) apply(t *turn, _ *request) {
	if hc, ok := t.d.active[j.id]; ok {
		j.hc, j.ok = *hc, true
	}
}
