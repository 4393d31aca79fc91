package command

import flotillav1 "flotilla.dev/gen/flotilla/v1"

// Terminal reports whether s is a terminal state: nothing follows it, and
// the command's result is final.
func Terminal(s flotillav1.CommandState) bool {
	switch s {
	case flotillav1.CommandState_COMMAND_STATE_SUCCEEDED,
		flotillav1.CommandState_COMMAND_STATE_FAILED,
		flotillav1.CommandState_COMMAND_STATE_CANCELLED,
		flotillav1.CommandState_COMMAND_STATE_TIMED_OUT,
		flotillav1.CommandState_COMMAND_STATE_REJECTED,
		flotillav1.CommandState_COMMAND_STATE_SKIPPED:
		return true
	}
	return false
}

// Rank orders states along the lifecycle PENDING → ACCEPTED → RUNNING → a
// terminal state, so that an update never moves a command back: a late
// ACCEPTED after RUNNING, or anything after a terminal state, ranks no
// higher than what it would replace. UNSPECIFIED and PENDING rank 0 (the
// agent never journals them); every terminal state ranks highest.
func Rank(s flotillav1.CommandState) int {
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

// StateName is the short lower-case name of s (the enum name without its
// COMMAND_STATE_ prefix) used in metrics and summaries; "unknown" for
// UNSPECIFIED and for a state this version does not know.
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
