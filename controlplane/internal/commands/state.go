package commands

import flotillav1 "flotilla.dev/gen/flotilla/v1"

// failed reports whether a terminal state counts against max_errors.
func failed(s flotillav1.CommandState) bool {
	switch s {
	case flotillav1.CommandState_COMMAND_STATE_FAILED, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT,
		flotillav1.CommandState_COMMAND_STATE_REJECTED, flotillav1.CommandState_COMMAND_STATE_CANCELLED:
		return true
	}
	return false
}
