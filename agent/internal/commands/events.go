package commands

import (
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"flotilla.dev/agent/internal/journal"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	accepted  = flotillav1.CommandState_COMMAND_STATE_ACCEPTED
	running   = flotillav1.CommandState_COMMAND_STATE_RUNNING
	succeeded = flotillav1.CommandState_COMMAND_STATE_SUCCEEDED
	failed    = flotillav1.CommandState_COMMAND_STATE_FAILED
	canceled  = flotillav1.CommandState_COMMAND_STATE_CANCELLED
	timedOut  = flotillav1.CommandState_COMMAND_STATE_TIMED_OUT
	rejected  = flotillav1.CommandState_COMMAND_STATE_REJECTED
)

// Bounds on what the agent echoes back to the control plane. A message the
// control plane cannot accept (it takes 1 MiB at most) would never be
// delivered, and would fail the journal report of every stream after it: a
// broken or hostile control plane must not be able to make the agent build
// one by sending huge parameters for the agent to quote in a refusal.
const (
	// MaxCommandIDBytes bounds a command ID. A command with a longer one is
	// dropped unanswered (the control plane's IDs are a few dozen bytes).
	MaxCommandIDBytes = 256
	// MaxEventMessageBytes bounds an event's message; a longer one is cut.
	MaxEventMessageBytes = 4096
)

// event is a new event of command id, stamped now. The message is cut to
// MaxEventMessageBytes and made valid UTF-8 (protobuf strings must be).
func (r *Runner) event(id string, state flotillav1.CommandState, message string) *flotillav1.CommandEvent {
	message = truncate(strings.ToValidUTF8(message, "\uFFFD"), MaxEventMessageBytes)
	return &flotillav1.CommandEvent{CommandId: id, State: state, Message: message, At: timestamppb.New(r.cfg.Clock.Now())}
}

// truncated ends a message that was cut.
const truncated = "… (truncated)"

// truncate cuts s to at most n bytes, at a character boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n-len(truncated), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncated
}

// emit journals ev, then sends it. The emit lock orders a command's events:
// journal and stream see them in the same order, and a resend never
// overtakes a newer event.
func (r *Runner) emit(x *execution, ev *flotillav1.CommandEvent) {
	x.emitMu.Lock()
	defer x.emitMu.Unlock()
	if _, err := r.cfg.Journal.Update(ev.GetCommandId(), ev); err != nil {
		if errors.Is(err, journal.ErrFinished) {
			// Only this execution writes its entry; this is a bug, and the
			// journaled final event stands.
			r.log.Error("event after the command's final event dropped", logging.CommandID(ev.GetCommandId()), zap.Error(err))
			return
		}
		// The command was journaled before it started, so at-most-once
		// holds; the control plane should still hear the event.
		r.log.Error("journaling a command event failed; sending it anyway", logging.CommandID(ev.GetCommandId()), zap.Error(err))
	}
	if ev.GetProgress() == nil {
		r.logEvent(x.cmd, ev, x.receivedAt)
	}
	if r.cfg.BeforeFinal != nil && command.Terminal(ev.GetState()) {
		r.cfg.BeforeFinal(x.cmd)
	}
	r.send(ev)
}

// send sends ev to the control plane, best effort.
func (r *Runner) send(ev *flotillav1.CommandEvent) {
	if err := r.cfg.Send(ev); err != nil {
		r.log.Debug("command event not sent; the journal report of the next stream carries it",
			logging.CommandID(ev.GetCommandId()), zap.String("state", stateName(ev.GetState())), zap.Error(err))
	}
}

// logEvent logs one line per state change of a command.
func (r *Runner) logEvent(cmd *flotillav1.Command, ev *flotillav1.CommandEvent, receivedAt time.Time) {
	level := zapcore.InfoLevel
	switch ev.GetState() {
	case failed, timedOut, rejected:
		level = zapcore.WarnLevel
	}
	r.log.Log(level, "command "+stateName(ev.GetState()),
		logging.CommandID(cmd.GetId()),
		zap.String("kind", command.Kind(cmd.GetSpec())),
		zap.String("state", stateName(ev.GetState())),
		zap.Duration("duration", r.cfg.Clock.Since(receivedAt)),
		zap.String("message", ev.GetMessage()))
}

// stateName is a state's short lower-case name: "running", "timed_out".
func stateName(s flotillav1.CommandState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "COMMAND_STATE_"))
}
