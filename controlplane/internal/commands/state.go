package commands

import flotillav1 "flotilla.dev/gen/flotilla/v1"

// Terminal reports whether a host command state is final.
func Terminal(s flotillav1.CommandState) bool {
	switch s {
	case flotillav1.CommandState_COMMAND_STATE_SUCCEEDED, flotillav1.CommandState_COMMAND_STATE_FAILED,
		flotillav1.CommandState_COMMAND_STATE_CANCELLED, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT,
		flotillav1.CommandState_COMMAND_STATE_REJECTED, flotillav1.CommandState_COMMAND_STATE_SKIPPED:
		return true
	}
	return false
}

// failed reports whether a final state counts against max_errors.
func failed(s flotillav1.CommandState) bool {
	switch s {
	case flotillav1.CommandState_COMMAND_STATE_FAILED, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT,
		flotillav1.CommandState_COMMAND_STATE_REJECTED, flotillav1.CommandState_COMMAND_STATE_CANCELLED:
		return true
	}
	return false
}

// rank orders states so that events never move a command backwards: a late
// ACCEPTED after RUNNING, or anything after a final state, is ignored.
func rank(s flotillav1.CommandState) int {
	switch {
	case Terminal(s):
		return 3
	case s == flotillav1.CommandState_COMMAND_STATE_RUNNING:
		return 2
	case s == flotillav1.CommandState_COMMAND_STATE_ACCEPTED:
		return 1
	default:
		return 0
	}
}

// StateName is the short lower-case name used in metrics and summaries.
func StateName(s flotillav1.CommandState) string {
	switch s {
	case flotillav1.CommandState_COMMAND_STATE_PENDING:
		return "pending"
	case flotillav1.CommandState_COMMAND_STATE_ACCEPTED:
		return "accepted"
	case flotillav1.CommandState_COMMAND_STATE_RUNNING:
		return "running"
	case flotillav1.CommandState_COMMAND_STATE_SUCCEEDED:
		return "succeeded"
	case flotillav1.CommandState_COMMAND_STATE_FAILED:
		return "failed"
	case flotillav1.CommandState_COMMAND_STATE_CANCELLED:
		return "cancelled"
	case flotillav1.CommandState_COMMAND_STATE_TIMED_OUT:
		return "timed_out"
	case flotillav1.CommandState_COMMAND_STATE_REJECTED:
		return "rejected"
	case flotillav1.CommandState_COMMAND_STATE_SKIPPED:
		return "skipped"
	default:
		return "unknown"
	}
}
