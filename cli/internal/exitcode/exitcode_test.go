package exitcode

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

func TestForRollout(t *testing.T) {
	for _, tc := range []struct {
		state flotillav1.RolloutState
		final bool
		code  Code
	}{
		{flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED, true, OK},
		{flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, true, RolledBack},
		{flotillav1.RolloutState_ROLLOUT_STATE_FAILED, true, Failed},
		{flotillav1.RolloutState_ROLLOUT_STATE_ROLLBACK_FAILED, true, Failed},
		{flotillav1.RolloutState_ROLLOUT_STATE_ABORTED, true, Cancelled},
		{flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, false, Failed},
		{flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, false, Failed},
		{flotillav1.RolloutState_ROLLOUT_STATE_PAUSED, false, Failed},
		// Baking: every batch is done but the analysis goes on; not live yet.
		{flotillav1.RolloutState_ROLLOUT_STATE_BAKING, false, Failed},
		{flotillav1.RolloutState_ROLLOUT_STATE_ROLLING_BACK, false, Failed},
		// A newer server's state (a bake, an analysis): never final to
		// this version, never success.
		{flotillav1.RolloutState(42), false, Failed},
	} {
		if got := RolloutFinal(tc.state); got != tc.final {
			t.Errorf("RolloutFinal(%v) = %t, want %t", tc.state, got, tc.final)
		}
		if got := ForRollout(tc.state); got != tc.code {
			t.Errorf("ForRollout(%v) = %d, want %d", tc.state, got, tc.code)
		}
	}
}

func TestForCommand(t *testing.T) {
	for _, tc := range []struct {
		state flotillav1.FleetCommandState
		final bool
		code  Code
	}{
		{flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED, true, OK},
		{flotillav1.FleetCommandState_FLEET_COMMAND_STATE_FAILED, true, Failed},
		{flotillav1.FleetCommandState_FLEET_COMMAND_STATE_CANCELLED, true, Cancelled},
		{flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING, false, Failed},
		{flotillav1.FleetCommandState(9), false, Failed},
	} {
		if got := CommandFinal(tc.state); got != tc.final {
			t.Errorf("CommandFinal(%v) = %t, want %t", tc.state, got, tc.final)
		}
		if got := ForCommand(tc.state); got != tc.code {
			t.Errorf("ForCommand(%v) = %d, want %d", tc.state, got, tc.code)
		}
	}
}

func TestForError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code Code
	}{
		{nil, OK},
		{status.Error(codes.InvalidArgument, "image: not a reference"), Invalid},
		{status.Error(codes.NotFound, "rollout_id: not found"), Invalid},
		{status.Error(codes.OutOfRange, "page_size"), Invalid},
		{status.Error(codes.Unauthenticated, "invalid API token"), Denied},
		{status.Error(codes.PermissionDenied, "needs role operator"), Denied},
		{status.Error(codes.Unavailable, "connection refused"), Transport},
		{status.Error(codes.DeadlineExceeded, "deadline"), Transport},
		{status.Error(codes.FailedPrecondition, "service web already has an active rollout"), Blocked},
		{status.Error(codes.AlreadyExists, "conflict"), Blocked},
		{status.Error(codes.Internal, "boom"), Error},
		{status.Error(codes.Canceled, "canceled"), Interrupted},
		{context.DeadlineExceeded, Transport},
		{errors.New("disk full"), Error},
		{With(Timeout, errors.New("still running")), Timeout},
		{fmt.Errorf("wrapped: %w", With(RolledBack, errors.New("rolled back"))), RolledBack},
		// A code given explicitly wins over the status inside.
		{With(Invalid, status.Error(codes.Internal, "x")), Invalid},
	} {
		if got := ForError(tc.err); got != tc.code {
			t.Errorf("ForError(%v) = %d (%s), want %d (%s)", tc.err, got, got, tc.code, tc.code)
		}
	}
}

// TestCodesDistinct: every ending a script must tell apart has its own code.
func TestCodesDistinct(t *testing.T) {
	seen := map[Code]string{}
	for _, c := range []Code{OK, Error, Invalid, Denied, Transport, Blocked, Timeout, Interrupted, Failed, RolledBack, Cancelled} {
		if other, ok := seen[c]; ok {
			t.Errorf("%s and %s share code %d", c, other, int(c))
		}
		seen[c] = c.String()
	}
}
