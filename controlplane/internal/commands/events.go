package commands

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// OnEvent applies an event an agent sent about one of its commands and
// returns once the change is stored and applied and the listeners know of
// it (or once it is refused). The agent is the one bound to the stream
// (from its certificate): an event about another agent's command is
// refused, never trusted.
//
// The events of a whole fleet answering a command at once are stored
// together, one transaction per turn of the dispatcher's owner (see
// loop.go). A failed write fails the events whose change it held, and
// none of them is applied: their agents resend them after reconnecting.
func (d *Dispatcher) OnEvent(ctx context.Context, agentID string, ev *flotillav1.CommandEvent) error {
	j := &eventJob{agentID: agentID, ev: ev}
	if err := d.do(ctx, j); err != nil {
		return err
	}
	if j.unknown {
		return d.unknownEvent(ctx, agentID, ev)
	}
	return nil
}

// eventJob applies one agent's event.
type eventJob struct {
	agentID string
	ev      *flotillav1.CommandEvent
	unknown bool      // not an active command: the caller looks it up
	id      [1]string // the command, as ids returns it (no allocation per event)
}

func (j *eventJob) ids() []string {
	j.id[0] = j.ev.GetCommandId()
	return j.id[:]
}

func (j *eventJob) prepare(t *turn, r *request) error {
	id := j.ev.GetCommandId()
	hc, ok := t.d.active[id]
	switch {
	case !ok:
		j.unknown = true
		return nil
	case hc.AgentID != j.agentID:
		t.d.log.Warn("agent sent an event for another agent's command; ignored",
			logging.AgentID(j.agentID), logging.CommandID(id), zap.String("owner", hc.AgentID))
		return fmt.Errorf("%w: %s is not agent %s's", ErrNotOwner, id, j.agentID)
	case hc.ReleasedAt.IsZero():
		// Still queued: never sent, so the agent cannot have run it.
		t.d.log.Warn("agent reported a command that was not sent yet; ignored",
			logging.AgentID(j.agentID), logging.CommandID(id))
		return nil
	}
	c, changed, err := next(hc, j.ev, t.now)
	if err != nil {
		return err
	}
	if changed {
		r.changes = append(r.changes, c)
	}
	return nil
}

func (j *eventJob) apply(t *turn, r *request) { t.applyAll(r) }

// unknownEvent handles an event for a command that is not active: usually
// a resent final event after a reconnect.
func (d *Dispatcher) unknownEvent(ctx context.Context, agentID string, ev *flotillav1.CommandEvent) error {
	hc, err := d.cfg.Store.GetHostCommand(ctx, ev.GetCommandId())
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.log.Warn("agent reported a command the control plane does not know; ignored",
			logging.AgentID(agentID), logging.CommandID(ev.GetCommandId()))
		return nil
	case err != nil:
		return err
	case hc.AgentID != agentID:
		d.log.Warn("agent sent an event for another agent's command; ignored",
			logging.AgentID(agentID), logging.CommandID(ev.GetCommandId()), zap.String("owner", hc.AgentID))
		return fmt.Errorf("%w: %s is not agent %s's", ErrNotOwner, ev.GetCommandId(), agentID)
	case d.cfg.Replica && hc.FinishedAt.IsZero():
		// Another replica drives it (or will, once it takes the work
		// over): the event goes to it through the store.
		return d.report(ctx, agentID, hc, ev)
	}
	if command.Terminal(ev.GetState()) && flotillav1.CommandState(hc.State) != ev.GetState() {
		// The control plane ended the command first (deadline, lost
		// agent); keep its outcome but record what the agent said.
		d.log.Info("agent reported an outcome for a command already ended by the control plane",
			logging.AgentID(agentID), logging.CommandID(hc.ID),
			zap.String("recorded", command.StateName(flotillav1.CommandState(hc.State))), zap.String("reported", command.StateName(ev.GetState())),
			zap.String("message", ev.GetMessage()))
	}
	return nil
}
