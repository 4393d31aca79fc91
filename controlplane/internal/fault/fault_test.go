package fault

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"flotilla.dev/controlplane/internal/store"
)

func TestErrorsMatchTheirKindAndKeepTheirMessage(t *testing.T) {
	cause := errors.New("connection refused")
	tests := []struct {
		name string
		err  error
		kind error
		msg  string
	}{
		{"validation", Invalid("spec.pull.image", "must not be empty, got %q", ""), ErrInvalid, `spec.pull.image: must not be empty, got ""`},
		{"not found with field and hint", &NotFoundError{Field: "rollout_id", Kind: "rollout", ID: "ro-1", Hint: "ListRollouts shows them"}, ErrNotFound,
			`rollout_id: rollout "ro-1" not found (ListRollouts shows them)`},
		{"not found bare", &NotFoundError{Kind: "command", ID: "cmd-1"}, ErrNotFound, `command "cmd-1" not found`},
		{"precondition", Preconditionf("rollout %s is %s", "ro-1", "PAUSED"), ErrPrecondition, "rollout ro-1 is PAUSED"},
		{"unavailable", Unavailablef("store unavailable; retry"), ErrUnavailable, "store unavailable; retry"},
		{"unavailable with cause", Unavailable(cause, "the command could not be stored"), ErrUnavailable, "the command could not be stored"},
		{"exhausted", Exhaustedf("watcher fell behind"), ErrExhausted, "watcher fell behind"},
		{"unauthenticated", Unauthenticatedf("invalid API token"), ErrUnauthenticated, "invalid API token"},
		{"permission denied", PermissionDeniedf("needs role %s", "admin"), ErrPermissionDenied, "needs role admin"},
		{"wrapped", fmt.Errorf("starting: %w", Preconditionf("busy")), ErrPrecondition, "starting: busy"},
	}
	kinds := []error{ErrInvalid, ErrNotFound, ErrPrecondition, ErrUnavailable, ErrExhausted, ErrUnauthenticated, ErrPermissionDenied}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.msg {
				t.Errorf("Error() = %q, want %q", got, tt.msg)
			}
			for _, k := range kinds {
				if got, want := errors.Is(tt.err, k), k == tt.kind; got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", k, got, want)
				}
			}
		})
	}
	if !errors.Is(Unavailable(cause, "x"), cause) {
		t.Error("Unavailable(cause, …) does not match its cause")
	}
	var ve *ValidationError
	if !errors.As(fmt.Errorf("w: %w", Invalid("f", "r")), &ve) || ve.Field != "f" || ve.Reason != "r" {
		t.Errorf("errors.As(*ValidationError) = %+v", ve)
	}
}

// A store error is Unavailable only when the database is away; any other
// is ours (no kind: the API reports it as Internal), and both keep the cause.
func TestStoreTellsOutagesFromFaults(t *testing.T) {
	outage := fmt.Errorf("connect: %w", store.ErrUnavailable)
	bug := errors.New(`null value in column "load_balancers"`)
	kinds := []error{ErrInvalid, ErrNotFound, ErrPrecondition, ErrUnavailable, ErrExhausted, ErrUnauthenticated, ErrPermissionDenied}
	tests := []struct {
		name  string
		cause error
		kind  error // nil: none
	}{
		{"database away", outage, ErrUnavailable},
		{"a bug", bug, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Store("storing rollout ro-1", tt.cause)
			if !errors.Is(err, tt.cause) || !strings.HasPrefix(err.Error(), "storing rollout ro-1: ") {
				t.Errorf("Store = %v, want it to name what failed and wrap %v", err, tt.cause)
			}
			for _, k := range kinds {
				if got, want := errors.Is(err, k), k == tt.kind; got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", k, got, want)
				}
			}
		})
	}
}
