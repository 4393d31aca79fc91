package commands

import (
	"fmt"
	"time"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/logging"
	"go.uber.org/zap"
)

// admit decides a new command's first event: ACCEPTED with the executor
// that will run it, or a final event (REJECTED, TIMED_OUT) for a command
// that must not start.
func (r *Runner) admit(cmd *flotillav1.Command) (*flotillav1.CommandEvent, executor.Executor) {
	refuse := func(state flotillav1.CommandState, format string, args ...any) (*flotillav1.CommandEvent, executor.Executor) {
		return r.event(cmd.GetId(), state, fmt.Sprintf(format, args...)), nil
	}
	spec := cmd.GetSpec()
	if spec == nil {
		return refuse(rejected, "the command has no spec")
	}
	kind := command.Kind(spec)
	if kind == "" {
		return refuse(rejected, "unknown command kind: this agent version does not know it (upgrade the agent)")
	}
	exec := r.cfg.Executors[kind]
	if exec == nil {
		return refuse(rejected, "this agent does not run %s commands: no %s executor is configured", kind, kind)
	}
	if d := cmd.GetDeadline(); d != nil {
		if err := d.CheckValid(); err != nil {
			return refuse(rejected, "the deadline is not a valid timestamp: %v", err)
		}
		if now := r.cfg.Clock.Now(); !now.Before(d.AsTime()) {
			return refuse(timedOut, "the deadline %s passed before the command started; it was not run",
				d.AsTime().UTC().Format(time.RFC3339))
		}
	}
	if err := validate(exec, spec); err != nil {
		return refuse(rejected, "%s", err.Error())
	}
	return r.event(cmd.GetId(), accepted, "accepted"), exec
}

// validate runs the executor's Validate; a panic refuses the command
// instead of taking the agent down.
func validate(exec executor.Executor, spec *flotillav1.CommandSpec) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the %s executor panicked while validating the command: %v", command.Kind(spec), v)
		}
	}()
	return exec.Validate(spec)
}

// refuseAnonymous drops a command without an ID. It cannot be journaled
// (the ID is the key), nor answered: an event needs the command's ID, and
// the control plane refuses one without.
func (r *Runner) refuseAnonymous(cmd *flotillav1.Command) {
	r.log.Error("command without an ID dropped: the control plane sent an invalid command",
		zap.String("kind", command.Kind(cmd.GetSpec())))
}

// refuseOversizedID drops a command whose ID is longer than
// MaxCommandIDBytes. Every event repeats the ID, so answering could build
// events the control plane cannot accept; the command is not journaled
// either (the ID is the journal's key).
func (r *Runner) refuseOversizedID(cmd *flotillav1.Command) {
	r.log.Error("command with an oversized ID dropped: the control plane sent an invalid command",
		zap.String("command_id_prefix", truncate(cmd.GetId(), 64)),
		zap.Int("command_id_bytes", len(cmd.GetId())),
		zap.Int("max_bytes", MaxCommandIDBytes),
		zap.String("kind", command.Kind(cmd.GetSpec())))
}

// refuseUnjournaled answers a command the journal could not record. Running
// it would break at-most-once (a redelivery could not be recognised), so it
// is refused, and not journaled either: a later delivery may succeed.
func (r *Runner) refuseUnjournaled(cmd *flotillav1.Command, err error) {
	r.log.Error("command refused: it could not be journaled", logging.CommandID(cmd.GetId()),
		zap.String("kind", command.Kind(cmd.GetSpec())), zap.Error(err))
	r.send(r.event(cmd.GetId(), rejected, fmt.Sprintf("the agent could not journal the command, so it did not run it: %v", err)))
}
