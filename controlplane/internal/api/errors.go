package api

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
)

// GRPCError is the one place where the errors of the domain packages
// (package fault, the store's sentinels, context errors) become gRPC status
// codes that tell the caller what to do; the services call it, and the
// server wraps authentication (package auth) in it. A status error passes through as
// it is; nil stays nil; anything else is Internal.
func GRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

// codeOf picks the code for a domain error; the first kind that matches
// wins, so a store error wrapped as a precondition stays a precondition.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, fault.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, fault.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, fault.ErrPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, fault.ErrExhausted):
		return codes.ResourceExhausted
	case errors.Is(err, fault.ErrUnauthenticated):
		return codes.Unauthenticated
	case errors.Is(err, fault.ErrPermissionDenied):
		return codes.PermissionDenied
	case errors.Is(err, fault.ErrUnavailable), errors.Is(err, store.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, store.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, store.ErrConflict):
		return codes.AlreadyExists
	}
	if s, ok := status.FromError(err); ok {
		// A status error wrapped by fmt.Errorf: keep its code.
		return s.Code()
	}
	return codes.Internal
}

// principalOf names the caller for the records it creates ("kind:id";
// "" when the call carries no principal).
func principalOf(ctx context.Context) string {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		return p.Kind + ":" + p.ID
	}
	return ""
}
