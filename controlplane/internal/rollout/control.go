package rollout

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// Operators' requests across replicas: a replica asked to pause, resume or
// abort a rollout it does not drive stores the request (rollout_controls);
// the driving replica reads the pending requests every PollInterval,
// applies each one as if it had been asked itself, and stores its answer
// under its fence; the asking replica waits for the answer and returns it.
// A request stored while no replica drives the rollout (between a replica's
// death and the takeover) is applied by the next driver as it starts.

// controlWait bounds how long a replica waits for the driver's answer when
// the caller set no deadline: longer than a takeover (a lease's TTL and a
// claim interval) on the defaults.
const controlWait = 30 * time.Second

// requestControl stores an operator's request for the replica driving the
// rollout and waits for its answer.
func (e *Engine) requestControl(ctx context.Context, req controlRequest, id string) error {
	c, err := e.cfg.Store.CreateRolloutControl(ctx, store.RolloutControl{RolloutID: id, Op: req.op, Reason: req.reason,
		Rollback: req.rollback, RequestedAt: e.cfg.Now()})
	if err != nil {
		return unavailable(err, "the request could not be stored for the replica driving the rollout")
	}
	wait := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, controlWait)
		defer cancel()
	}
	ticker := time.NewTicker(e.cfg.PollInterval / 5)
	defer ticker.Stop()
	for {
		select {
		case <-wait.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fault.Unavailablef("rollout %s: the replica driving it has not answered the %s request within %s; the request stays queued (number %d) and is applied when a replica drives the rollout",
				id, req.op, controlWait, c.Seq)
		case <-ticker.C:
		}
		got, err := e.cfg.Store.GetRolloutControl(wait, c.Seq)
		if err != nil {
			if wait.Err() != nil {
				continue
			}
			return unavailable(err, "reading the answer of the replica driving the rollout failed")
		}
		if !got.AnsweredAt.IsZero() {
			return answerError(got)
		}
		if err := e.endedMeanwhile(wait, id); err != nil {
			return err
		}
	}
}

// endedMeanwhile returns a precondition failure once the rollout has
// ended: its driver no longer reads requests.
func (e *Engine) endedMeanwhile(ctx context.Context, id string) error {
	rec, err := e.cfg.Store.GetRollout(ctx, id)
	if err != nil || !Terminal(flotillav1.RolloutState(rec.State)) {
		return nil // a read error: the next tick looks again
	}
	return fault.Preconditionf("rollout %s already ended (%s)", id, flotillav1.RolloutState(rec.State))
}

// answerError is the error a stored answer stands for; nil when applied.
func answerError(c store.RolloutControl) error {
	switch codes.Code(c.Code) {
	case codes.OK:
		return nil
	case codes.FailedPrecondition:
		return fault.Preconditionf("%s", c.Answer)
	case codes.Unavailable:
		return fault.Unavailablef("%s", c.Answer)
	default:
		return status.Error(codes.Code(c.Code), c.Answer)
	}
}

// answerCode is the gRPC code of a control's outcome.
func answerCode(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, fault.ErrPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, fault.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, fault.ErrInvalid):
		return codes.InvalidArgument
	default:
		return codes.Internal
	}
}

// pollControls applies the operators' requests stored for this rollout by
// other replicas, in order, and stores each answer under the runner's fence.
func (r *runner) pollControls(ctx context.Context) {
	reqs, err := r.e.cfg.Store.ListPendingRolloutControls(ctx, r.rec.ID)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("reading operators' requests failed; retrying", zap.Error(err), zap.Duration("retry_in", r.e.cfg.PollInterval))
		}
		return
	}
	for _, c := range reqs {
		if r.fenced || ctx.Err() != nil {
			return
		}
		err := r.handleControl(ctx, controlRequest{op: c.Op, reason: c.Reason, rollback: c.Rollback})
		if r.fenced {
			return
		}
		c.AnsweredAt, c.Code = r.e.cfg.Now(), int32(answerCode(err))
		if err != nil {
			c.Answer = err.Error()
		}
		if aerr := r.e.cfg.Store.AnswerRolloutControl(ctx, c, r.fence); aerr != nil {
			if errors.Is(aerr, store.ErrFenced) {
				r.stopFenced(aerr)
				return
			}
			if ctx.Err() == nil && !errors.Is(aerr, store.ErrConflict) {
				// Applied, not answered: the next poll applies it again,
				// which the operations allow (each is idempotent).
				r.log.Warn("storing the answer to an operator's request failed", zap.String("op", c.Op), zap.Error(aerr))
			}
			return
		}
		r.log.Info("operator "+c.Op+" (requested on another replica)", logging.RolloutID(r.rec.ID), zap.String("reason", c.Reason),
			zap.Bool("rollback", c.Rollback), zap.Int64("request", c.Seq), zap.Stringer("answer", codes.Code(c.Code)))
	}
}

// controlRemote handles an operator's call on a rollout this replica does
// not drive (replica mode).
func (e *Engine) controlRemote(ctx context.Context, req controlRequest, id string) (*flotillav1.Rollout, error) {
	rec, err := e.getRollout(ctx, id)
	if err != nil {
		return nil, err
	}
	if Terminal(flotillav1.RolloutState(rec.State)) {
		return nil, fault.Preconditionf("rollout %s already ended (%s)", id, flotillav1.RolloutState(rec.State))
	}
	if err := e.requestControl(ctx, req, id); err != nil {
		return nil, err
	}
	e.log.Info("operator "+req.op+" (applied by the replica driving the rollout)", logging.RolloutID(id),
		zap.String("reason", req.reason), zap.Bool("rollback", req.rollback))
	return e.GetRollout(ctx, id)
}
