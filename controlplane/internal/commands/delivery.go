package commands

import (
	"bytes"
	"fmt"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// Delivery: sending released commands and cancels to the agents' streams,
// and again when an agent reconnects. A command is sent only once its
// release is stored; sending is at-least-once, and the agent's journal
// turns a duplicate into a resend of its outcome (at-most-once execution).
// Everything here runs on the dispatcher's owner goroutine.

// releaseMessage is a released command's message: where it went.
func (d *Dispatcher) releaseMessage(agentID string, deadline time.Time) string {
	if !d.online(agentID) {
		return fmt.Sprintf("agent %s is offline; the command waits for it until %s", agentID, deadline.UTC().Format(time.RFC3339))
	}
	return "sent to the agent"
}

// online reports whether an agent has a stream: here, or in replica mode
// on another replica (as the registry's view of the fleet says).
func (d *Dispatcher) online(agentID string) bool {
	if _, here := d.cfg.Registry.SessionFor(agentID); here {
		return true
	}
	return d.cfg.Replica && d.cfg.Registry.State(agentID) == store.AgentConnected
}

// send sends a released command to its agent if connected.
func (t *turn) send(hc *store.HostCommand) {
	sess, ok := t.d.cfg.Registry.SessionFor(hc.AgentID)
	if !ok {
		return
	}
	spec, err := t.specs.decode(hc.Spec)
	if err != nil {
		t.d.log.Error("stored command spec is unreadable; not sent", logging.CommandID(hc.ID), zap.Error(err))
		return
	}
	msg := &flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Command{Command: &flotillav1.Command{
		Id: hc.ID, Deadline: timestamppb.New(hc.Deadline), Spec: spec,
	}}}
	if sess.Send(msg) {
		hc.SentAt = t.now
	}
}

// sendCancel sends CancelCommand if the agent is connected; if not, the
// connectJob sends it after the command when the agent comes back.
func (d *Dispatcher) sendCancel(hc *store.HostCommand, reason string) {
	if sess, online := d.cfg.Registry.SessionFor(hc.AgentID); online {
		sess.Send(&flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Cancel{Cancel: &flotillav1.CancelCommand{
			CommandId: hc.ID, Reason: reason,
		}}})
	}
}

// requestCancels records reason for every active command of ids and sends
// CancelCommand for those that reached their agent.
func (d *Dispatcher) requestCancels(ids []string, reason string) {
	for _, id := range ids {
		hc, ok := d.active[id]
		if !ok {
			continue
		}
		d.cancels[id] = reason
		if !hc.SentAt.IsZero() {
			d.sendCancel(hc, reason)
		}
	}
}

// specDecoder decodes stored command specs for sending, each distinct one
// once: the hosts of a fleet command share theirs, which a 10,000-host
// command would otherwise decode 10,000 times on the owner goroutine.
// The messages share the decoded spec; from then on it is only read
// (marshalled, which is safe concurrently).
type specDecoder struct {
	raw  []byte
	spec *flotillav1.CommandSpec
}

func (c *specDecoder) decode(raw []byte) (*flotillav1.CommandSpec, error) {
	if c.spec != nil && bytes.Equal(c.raw, raw) {
		return c.spec, nil
	}
	spec := &flotillav1.CommandSpec{}
	if err := proto.Unmarshal(raw, spec); err != nil {
		return nil, err
	}
	c.raw, c.spec = raw, spec
	return spec, nil
}

// releaseJob gives queued commands their turn (see Dispatcher.Release).
type releaseJob struct {
	cmds    []string
	timeout time.Duration
}

func (j *releaseJob) ids() []string { return j.cmds }

func (j *releaseJob) prepare(t *turn, r *request) error {
	for _, id := range j.cmds {
		hc, ok := t.d.active[id]
		if !ok || !hc.ReleasedAt.IsZero() || t.changed[id] {
			continue // unknown, released already, or given twice
		}
		next := *hc
		next.ReleasedAt, next.Deadline = t.now, t.now.Add(j.timeout)
		next.Message = t.d.releaseMessage(hc.AgentID, next.Deadline)
		ev := &flotillav1.CommandEvent{CommandId: id, State: flotillav1.CommandState(next.State), Message: next.Message, At: timestamppb.New(t.now)}
		r.changes = append(r.changes, change{next: next, ev: ev, persist: true})
		t.changed[id] = true
	}
	return nil
}

// apply sends each released command before listeners hear of it, so that
// they see when it was sent.
func (j *releaseJob) apply(t *turn, r *request) {
	for _, c := range r.changes {
		hc := t.d.active[c.next.ID]
		setKeepingSent(hc, c.next)
		t.send(hc)
		t.updates = append(t.updates, Update{Command: *hc, Event: c.ev})
	}
}

// cancelJob asks agents to stop commands (see Dispatcher.Cancel).
type cancelJob struct {
	cmds   []string
	reason string
}

func (j *cancelJob) ids() []string { return j.cmds }

// prepare ends at once the commands their agent never acknowledged; in
// replica mode it stores the cancel of the others, and of those too (a
// replica may have relayed them), for the replica holding their agents'
// streams.
func (j *cancelJob) prepare(t *turn, r *request) error {
	var pending, started []string
	for _, id := range j.cmds {
		hc, ok := t.d.active[id]
		switch {
		case ok && flotillav1.CommandState(hc.State) == flotillav1.CommandState_COMMAND_STATE_PENDING:
			pending = append(pending, id)
		case ok && t.d.cfg.Replica:
			started = append(started, id)
		}
	}
	if err := t.finishChanges(r, pending, flotillav1.CommandState_COMMAND_STATE_CANCELLED, "cancelled before the agent started it: "+j.reason); err != nil {
		return err
	}
	if t.d.cfg.Replica {
		withCancelReason(r, 0, j.reason)
		t.cancelChanges(r, started, j.reason)
	}
	return nil
}

func (j *cancelJob) apply(t *turn, r *request) {
	t.d.requestCancels(j.cmds, j.reason)
	t.applyAll(r)
}

// connectJob resends an agent's released, unfinished commands, and the
// cancels it missed, when it opens a stream.
type connectJob struct{ agentID string }

func (j *connectJob) ids() []string                 { return nil }
func (j *connectJob) prepare(*turn, *request) error { return nil }

func (j *connectJob) apply(t *turn, _ *request) {
	for _, hc := range t.d.byAgent[j.agentID] {
		if hc.ReleasedAt.IsZero() {
			continue
		}
		t.send(hc)
		if reason, ok := t.d.cancels[hc.ID]; ok {
			t.d.sendCancel(hc, reason)
		}
	}
}
