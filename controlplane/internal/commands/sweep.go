package commands

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	pkgrun "flotilla.dev/pkg/run"

	"flotilla.dev/controlplane/internal/store"
)

// Sweep ends commands whose deadline (plus a grace for the agent's own
// answer) has passed, and commands started on agents that are now lost.
// A failed write is logged; the next sweep retries.
func (d *Dispatcher) Sweep(ctx context.Context) {
	if err := d.do(ctx, &sweepJob{}); err != nil && ctx.Err() == nil {
		d.log.Warn("ending overdue commands failed; will retry", zap.Error(err))
	}
}

// Run sweeps every SweepInterval until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	return pkgrun.Every(ctx, d.cfg.SweepInterval, d.Sweep)
}

// sweepJob ends the overdue commands in one write.
type sweepJob struct {
	overdue []string // timed out: their agents are asked to stop
}

func (j *sweepJob) ids() []string { return nil }

// prepare finds the overdue commands. One changed earlier in the turn is
// left to the next sweep.
func (j *sweepJob) prepare(t *turn, r *request) error {
	d := t.d
	var timedOut, lost, offline []string
	for id, hc := range d.active {
		if hc.ReleasedAt.IsZero() || t.changed[id] {
			continue
		}
		st := flotillav1.CommandState(hc.State)
		switch {
		case st != flotillav1.CommandState_COMMAND_STATE_PENDING && d.cfg.Registry.State(hc.AgentID) == store.AgentLost:
			lost = append(lost, id)
		case t.now.After(hc.Deadline.Add(d.cfg.DeadlineGrace)):
			if d.online(hc.AgentID) {
				timedOut = append(timedOut, id)
			} else {
				offline = append(offline, id)
			}
		}
	}
	j.overdue = append(timedOut, offline...)
	for _, f := range []struct {
		ids   []string
		state flotillav1.CommandState
		msg   string
	}{
		{lost, flotillav1.CommandState_COMMAND_STATE_FAILED, fmt.Sprintf("the agent stopped answering (no heartbeat for %s) while the command ran; its outcome is unknown", d.cfg.Registry.LostAfter())},
		{timedOut, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT, "no result from the agent by the deadline"},
		{offline, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT, "the agent was offline until the deadline; the command never ran"},
	} {
		from := len(r.changes)
		if err := t.finishChanges(r, f.ids, f.state, f.msg); err != nil {
			return err
		}
		if d.cfg.Replica && f.state == flotillav1.CommandState_COMMAND_STATE_TIMED_OUT {
			withCancelReason(r, from, "deadline passed")
		}
	}
	return nil
}

func (j *sweepJob) apply(t *turn, r *request) {
	t.d.requestCancels(j.overdue, "deadline passed")
	t.applyAll(r)
}
