package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/metrics"
)

// registerMethod is the one call a whole fleet makes at once when it boots.
const registerMethod = flotillav1.AgentService_Register_FullMethodName

// registrationAdmission bounds the registrations in progress. Each one
// writes the store several times (the audit row, the agent, the outcome)
// through its single writer; when thousands of hosts boot together, calls
// beyond what the writer absorbs would only queue, time out and be retried,
// so that the control plane ends up doing work nobody waits for. Calls over
// the bound are refused at once with RESOURCE_EXHAUSTED and a retry delay,
// before any store write, and the agents retry with their backoff.
type registrationAdmission struct {
	limit    int64
	inFlight atomic.Int64
	refused  prometheus.Counter
	log      *zap.Logger
	// lastLog rate-limits the warning to one per logEvery.
	lastLog atomic.Int64
}

const (
	admissionRetryAfter = 2 * time.Second
	admissionLogEvery   = 10 * time.Second
)

func newRegistrationAdmission(limit int, reg prometheus.Registerer, log *zap.Logger) *registrationAdmission {
	a := &registrationAdmission{
		limit: int64(limit),
		log:   log,
		refused: metrics.Counter("flotilla_agent_registrations_shed_total",
			"Registrations refused because registration_max_in_flight were already in progress."),
	}
	reg.MustRegister(a.refused)
	return a
}

// UnaryServerInterceptor admits Register calls up to the limit and passes
// every other call through.
func (a *registrationAdmission) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod != registerMethod {
			return handler(ctx, req)
		}
		if a.inFlight.Add(1) > a.limit {
			a.inFlight.Add(-1)
			return nil, a.refuse()
		}
		defer a.inFlight.Add(-1)
		return handler(ctx, req)
	}
}

func (a *registrationAdmission) refuse() error {
	a.refused.Inc()
	now := time.Now().UnixNano()
	if last := a.lastLog.Load(); now-last >= int64(admissionLogEvery) && a.lastLog.CompareAndSwap(last, now) {
		a.log.Warn("registrations shed: too many in progress; agents retry with backoff (raise registration_max_in_flight if the store keeps up)",
			zap.Int64("registration_max_in_flight", a.limit))
	}
	st := status.New(codes.ResourceExhausted, "the control plane is busy registering other agents; retry in "+admissionRetryAfter.String())
	if withDetails, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(admissionRetryAfter)}); err == nil {
		st = withDetails
	}
	return st.Err()
}
