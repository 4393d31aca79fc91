package fault

import (
	"errors"
	"fmt"

	"flotilla.dev/controlplane/internal/store"
)

// Sentinels that errors.Is matches. ValidationError and NotFoundError match
// ErrInvalid and ErrNotFound; Preconditionf, Unavailablef and Exhaustedf
// build errors that match the others.
var (
	ErrInvalid      = errors.New("invalid argument")
	ErrNotFound     = errors.New("not found")
	ErrPrecondition = errors.New("failed precondition")
	ErrUnavailable  = errors.New("unavailable")
	ErrExhausted    = errors.New("resource exhausted")
	// ErrUnauthenticated: the caller's credentials are missing or not
	// accepted. ErrPermissionDenied: they are, but not for this call.
	ErrUnauthenticated  = errors.New("unauthenticated")
	ErrPermissionDenied = errors.New("permission denied")
)

// ValidationError is a request field with a value that is refused.
type ValidationError struct {
	// Field is the request field, with its path ("spec.pull.image").
	Field string
	// Reason says what is wrong and what is accepted.
	Reason string
}

// Invalid returns a *ValidationError for field with the formatted reason.
func Invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// NotFoundError is an object the caller named that does not exist.
type NotFoundError struct {
	// Field is the request field that named it ("" when the object is
	// the call's subject).
	Field string
	// Kind is what was looked for: "agent", "command", "rollout", "service".
	Kind string
	ID   string
	// Hint tells the caller where to find the objects that exist ("" for none).
	Hint string
}

func (e *NotFoundError) Error() string {
	msg := fmt.Sprintf("%s %q not found", e.Kind, e.ID)
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrNotFound) hold.
func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// kindError is an error of one kind (a sentinel above) with its own message,
// optionally caused by another error.
type kindError struct {
	kind  error
	msg   string
	cause error
}

func (e *kindError) Error() string { return e.msg }

// Unwrap makes errors.Is match the kind and the cause.
func (e *kindError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// Preconditionf says the call cannot be done in the current state; the
// message says what blocks it.
func Preconditionf(format string, args ...any) error {
	return &kindError{kind: ErrPrecondition, msg: fmt.Sprintf(format, args...)}
}

// Unavailablef says the call could not be done now and may be retried.
func Unavailablef(format string, args ...any) error {
	return &kindError{kind: ErrUnavailable, msg: fmt.Sprintf(format, args...)}
}

// Unavailable says the call could not be done now because of cause (a store
// error, say) and may be retried; the message is msg alone, the cause stays
// reachable through errors.Is and errors.As.
func Unavailable(cause error, msg string) error {
	return &kindError{kind: ErrUnavailable, msg: msg, cause: cause}
}

// Exhaustedf says the caller used up a resource (fell behind a stream, hit
// a limit).
func Exhaustedf(format string, args ...any) error {
	return &kindError{kind: ErrExhausted, msg: fmt.Sprintf(format, args...)}
}

// Unauthenticatedf says the caller's credentials are missing or refused;
// the message says what to send instead.
func Unauthenticatedf(format string, args ...any) error {
	return &kindError{kind: ErrUnauthenticated, msg: fmt.Sprintf(format, args...)}
}

// PermissionDeniedf says the authenticated caller may not make this call.
func PermissionDeniedf(format string, args ...any) error {
	return &kindError{kind: ErrPermissionDenied, msg: fmt.Sprintf(format, args...)}
}

// Store describes a store call that failed while doing what: a database
// that is away (store.ErrUnavailable) is Unavailable, and the caller may
// retry; any other store error is a fault of ours, which the API reports as
// Internal rather than inviting a retry that would fail the same way.
func Store(what string, err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return Unavailable(err, fmt.Sprintf("%s: the database is unavailable (%v); retry", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}
