package exitcode

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// Code is a process exit code.
type Code int

// The exit codes. They are documented in docs/cli.md; a change here is a
// change to every script that calls flotilla.
const (
	// OK: the call succeeded; for a rollout, the new version is live on
	// every planned host; for a fleet command, every host succeeded.
	OK Code = 0
	// Error: anything not covered below (an internal error of the server,
	// a local file that cannot be written).
	Error Code = 1
	// Invalid: the input was refused: a usage error, a file that does not
	// parse, a field the server refused (InvalidArgument, OutOfRange) or
	// an object that does not exist (NotFound).
	Invalid Code = 2
	// Denied: the credentials are missing or refused (Unauthenticated), or
	// do not allow the call (PermissionDenied).
	Denied Code = 3
	// Transport: the control plane could not be reached or answered
	// Unavailable (after the re-attach attempts of a watch).
	Transport Code = 4
	// Blocked: the server refused to start because something else holds
	// the way: another active rollout of the service, no host to deploy to,
	// offline load balancers (FailedPrecondition, AlreadyExists).
	Blocked Code = 5
	// Timeout: --timeout ran out while the rollout or command was still
	// running; it goes on, and its ID is printed to re-attach.
	Timeout Code = 6
	// Interrupted: the watch was stopped by a signal (Ctrl-C); the
	// rollout or command goes on.
	Interrupted Code = 7
	// Failed: the rollout failed and was not recovered (FAILED: changed
	// hosts keep the new image; ROLLBACK_FAILED: the rollback itself
	// failed), or a fleet command ended with a failed host.
	Failed Code = 10
	// RolledBack: the rollout failed and every changed host is back on its
	// previous image: the release is not live, the fleet is healthy.
	RolledBack Code = 11
	// Cancelled: an operator aborted the rollout or cancelled the command.
	Cancelled Code = 12
)

// String names the code as docs/cli.md does.
func (c Code) String() string {
	switch c {
	case OK:
		return "ok"
	case Error:
		return "error"
	case Invalid:
		return "invalid input"
	case Denied:
		return "unauthenticated or permission denied"
	case Transport:
		return "transport error"
	case Blocked:
		return "blocked"
	case Timeout:
		return "timeout"
	case Interrupted:
		return "interrupted"
	case Failed:
		return "failed"
	case RolledBack:
		return "rolled back"
	case Cancelled:
		return "cancelled"
	default:
		return fmt.Sprintf("code %d", int(c))
	}
}

// RolloutFinal reports whether a rollout state is final. A state this
// version does not know is not final: the watch goes on until the server
// ends the stream and the rollout's finished_at says it is over.
func RolloutFinal(s flotillav1.RolloutState) bool {
	switch s {
	case flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED,
		flotillav1.RolloutState_ROLLOUT_STATE_FAILED,
		flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK,
		flotillav1.RolloutState_ROLLOUT_STATE_ABORTED,
		flotillav1.RolloutState_ROLLOUT_STATE_ROLLBACK_FAILED:
		return true
	}
	return false
}

// ForRollout is the code of a rollout in its final state. Only SUCCEEDED
// is OK; a final state this version does not know (a newer server's) is
// Failed, so that no new kind of ending is ever reported as live.
func ForRollout(s flotillav1.RolloutState) Code {
	switch s {
	case flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED:
		return OK
	case flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK:
		return RolledBack
	case flotillav1.RolloutState_ROLLOUT_STATE_ABORTED:
		return Cancelled
	default:
		return Failed
	}
}

// ForCommand is the code of a fleet command in its final state.
func ForCommand(s flotillav1.FleetCommandState) Code {
	switch s {
	case flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED:
		return OK
	case flotillav1.FleetCommandState_FLEET_COMMAND_STATE_CANCELLED:
		return Cancelled
	default:
		return Failed
	}
}

// CommandFinal reports whether a fleet command state is final.
func CommandFinal(s flotillav1.FleetCommandState) bool {
	switch s {
	case flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED,
		flotillav1.FleetCommandState_FLEET_COMMAND_STATE_FAILED,
		flotillav1.FleetCommandState_FLEET_COMMAND_STATE_CANCELLED:
		return true
	}
	return false
}

// Coded is an error that carries its exit code.
type Coded struct {
	// Code is the exit code.
	Code Code
	// Err is what happened.
	Err error
}

func (e *Coded) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Coded) Unwrap() error { return e.Err }

// With wraps err with code.
func With(code Code, err error) error {
	if err == nil {
		return nil
	}
	return &Coded{Code: code, Err: err}
}

// Withf is With of a formatted error.
func Withf(code Code, format string, args ...any) error {
	return &Coded{Code: code, Err: fmt.Errorf(format, args...)}
}

// ForError is the code of an error a command ended with: the code it
// carries (Coded), else the one its gRPC status calls for; nil is OK.
func ForError(err error) Code {
	if err == nil {
		return OK
	}
	var coded *Coded
	if errors.As(err, &coded) {
		return coded.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Transport
	}
	if s, ok := status.FromError(err); ok {
		return ForStatus(s.Code())
	}
	return Error
}

// ForStatus is the code of a call that failed with a gRPC status code.
func ForStatus(c codes.Code) Code {
	switch c {
	case codes.OK:
		return OK
	case codes.InvalidArgument, codes.NotFound, codes.OutOfRange:
		return Invalid
	case codes.Unauthenticated, codes.PermissionDenied:
		return Denied
	case codes.Unavailable, codes.DeadlineExceeded:
		return Transport
	case codes.FailedPrecondition, codes.AlreadyExists:
		return Blocked
	case codes.Canceled:
		return Interrupted
	default:
		return Error
	}
}
