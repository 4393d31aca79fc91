package executor

import (
	"context"
	"errors"
	"fmt"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// Progress reports progress of a running command. It never blocks for
// long and may drop reports when the stream is slow; the last one matters.
type Progress func(*flotillav1.CommandProgress)

// OrDiscard returns p, or a Progress that drops every report when p is
// nil: an Executor may be called without one (tests, a caller that does
// not stream progress).
func (p Progress) OrDiscard() Progress {
	if p == nil {
		return func(*flotillav1.CommandProgress) {}
	}
	return p
}

// Executor carries out one or more kinds of command.
type Executor interface {
	// Validate checks a spec against the agent's guard rails and the
	// parameters' grammar, without side effects. A refusal is a *Rejection
	// (the command ends COMMAND_STATE_REJECTED and never starts).
	Validate(spec *flotillav1.CommandSpec) error
	// Execute runs the command. ctx carries the command's deadline and is
	// cancelled on CancelCommand. A returned error fails the command with
	// its message (which must say what went wrong and what was restored);
	// a *Rejection found only at run time (e.g. a container that lacks the
	// managed label) rejects it.
	Execute(ctx context.Context, spec *flotillav1.CommandSpec, progress Progress) (*flotillav1.CommandResult, error)
}

// Rejection is a refusal by the agent's guard rails or validation.
type Rejection struct{ Reason string }

func (r *Rejection) Error() string { return r.Reason }

// Reject returns a *Rejection with a formatted reason.
func Reject(format string, args ...any) error {
	return &Rejection{Reason: fmt.Sprintf(format, args...)}
}

// IsRejection reports whether err is (or wraps) a *Rejection.
func IsRejection(err error) bool {
	var r *Rejection
	return errors.As(err, &r)
}
