// Package fault holds the errors that domain packages (commands, rollout, …)
// return to say what kind of failure happened, without knowing about gRPC:
// a request that is wrong (ValidationError), something named that does not
// exist (NotFoundError), a state that forbids the call (ErrPrecondition), a
// dependency that is away for now (ErrUnavailable) or a caller that cannot
// keep up (ErrExhausted), a caller unknown (ErrUnauthenticated) or not
// allowed (ErrPermissionDenied). Package api alone turns them into gRPC status codes.
package fault
