package api

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
)

func TestGRPCErrorMapsEachKindToItsCode(t *testing.T) {
	storeDown := fmt.Errorf("query: %w", store.ErrUnavailable)
	tests := []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"validation", fault.Invalid("spec.pull.image", "required"), codes.InvalidArgument, "spec.pull.image: required"},
		{"not found", &fault.NotFoundError{Field: "rollout_id", Kind: "rollout", ID: "ro-1", Hint: "ListRollouts shows them"},
			codes.NotFound, `rollout_id: rollout "ro-1" not found (ListRollouts shows them)`},
		{"precondition", fault.Preconditionf("rollout ro-1 already ended (SUCCEEDED)"), codes.FailedPrecondition, "rollout ro-1 already ended (SUCCEEDED)"},
		{"exhausted", fault.Exhaustedf("watcher fell behind"), codes.ResourceExhausted, "watcher fell behind"},
		{"unauthenticated", fault.Unauthenticatedf("invalid API token"), codes.Unauthenticated, "invalid API token"},
		{"permission denied", fault.PermissionDeniedf("needs role admin"), codes.PermissionDenied, "needs role admin"},
		{"unavailable", fault.Unavailablef("store unavailable; retry"), codes.Unavailable, "store unavailable; retry"},
		{"unavailable over a store error", fault.Unavailable(errors.New("disk I/O error"), "the rollout could not be stored"),
			codes.Unavailable, "the rollout could not be stored"},
		{"store unavailable is never Internal", storeDown, codes.Unavailable, storeDown.Error()},
		{"precondition caused by a store error keeps its kind", fmt.Errorf("%w: %w", fault.Preconditionf("busy"), store.ErrConflict),
			codes.FailedPrecondition, "busy: already exists"},
		{"store not found", fmt.Errorf("agent a: %w", store.ErrNotFound), codes.NotFound, "agent a: not found"},
		{"store conflict", store.ErrConflict, codes.AlreadyExists, "already exists"},
		{"canceled", context.Canceled, codes.Canceled, "context canceled"},
		{"deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "waiting: context deadline exceeded"},
		{"status passes through", status.Error(codes.PermissionDenied, "needs role admin"), codes.PermissionDenied, "needs role admin"},
		{"wrapped status keeps its code", fmt.Errorf("send: %w", status.Error(codes.Unavailable, "transport closing")),
			codes.Unavailable, "send: rpc error: code = Unavailable desc = transport closing"},
		{"anything else", errors.New("rollout ro-1 is unreadable"), codes.Internal, "rollout ro-1 is unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, ok := status.FromError(GRPCError(tt.err))
			if !ok {
				t.Fatalf("GRPCError(%v) is not a status error", tt.err)
			}
			if st.Code() != tt.code || st.Message() != tt.msg {
				t.Errorf("GRPCError(%v) = %v %q, want %v %q", tt.err, st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}
	if GRPCError(nil) != nil {
		t.Error("GRPCError(nil) != nil")
	}
}
