package api

import (
	"context"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// admitRegistration applies the per-address rate limit of Register. A
// refused attempt answers ResourceExhausted with a RetryInfo detail and the
// delay in the message; the first refusal of a burst is logged, and the
// number refused when the address is admitted again.
func (s *AgentService) admitRegistration(ctx context.Context) error {
	addr := peerAddress(ctx)
	source := sourceHost(addr)
	d := s.cfg.RegisterLimiter.Allow(source)
	if d.Allowed {
		if d.RefusedBefore > 0 {
			s.log.Info("agent registrations admitted again after rate limiting",
				zap.String("source", source), zap.Int("refused", d.RefusedBefore))
		}
		return nil
	}
	s.cfg.Metrics.registration("limited")
	retry := max(d.RetryAfter.Round(time.Second), time.Second)
	if d.FirstRefusal {
		s.log.Warn("agent registrations rate-limited; further refusals from this address are not logged until one is admitted",
			zap.String("source", source), zap.Duration("retry_after", retry))
	}
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("too many registration attempts from %s; retry in %s", source, retry))
	if withDetails, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); err == nil {
		st = withDetails
	}
	return st.Err()
}

// sourceHost is the address a rate limit applies to: the peer's IP without
// its port (the port changes with every connection).
func sourceHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
