package api

import (
	"context"
	"errors"

	"google.golang.org/grpc"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/remediation"
	"flotilla.dev/controlplane/internal/rollout"
	"flotilla.dev/controlplane/internal/store"
)

const (
	defaultRolloutPage = 20
	maxRolloutPage     = 200
	maxRolloutReason   = 1024
)

// RolloutServiceConfig configures the rollout service.
type RolloutServiceConfig struct {
	// Engine runs the rollouts (required).
	Engine Rollouts
	// Remediations keeps the remediation events (ListRemediations); nil
	// answers ListRemediations Unavailable.
	Remediations RemediationEvents
}

// RemediationEvents reads the remediation driver's events
// (store.RemediationStore).
type RemediationEvents interface {
	ListRemediations(ctx context.Context, q store.RemediationQuery) ([]store.Remediation, error)
}

// RolloutService implements flotilla.v1.RolloutService on the rollout
// engine: requests are validated here, field by field, and the engine
// validates what depends on the fleet and the store.
type RolloutService struct {
	flotillav1.UnimplementedRolloutServiceServer
	engine       Rollouts
	remediations RemediationEvents
}

// NewRolloutService validates cfg and returns the service.
func NewRolloutService(cfg RolloutServiceConfig) (*RolloutService, error) {
	if cfg.Engine == nil {
		return nil, errors.New("api: rollout service needs the rollout engine")
	}
	return &RolloutService{engine: cfg.Engine, remediations: cfg.Remediations}, nil
}

// PutService implements RolloutService.PutService.
func (s *RolloutService) PutService(ctx context.Context, req *flotillav1.PutServiceRequest) (*flotillav1.PutServiceResponse, error) {
	if err := rollout.ValidateService(req.GetService()); err != nil {
		return nil, GRPCError(err)
	}
	svc, err := s.engine.PutService(ctx, req.GetService())
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.PutServiceResponse{Service: svc}, nil
}

// GetService implements RolloutService.GetService.
func (s *RolloutService) GetService(ctx context.Context, req *flotillav1.GetServiceRequest) (*flotillav1.GetServiceResponse, error) {
	if err := rollout.ValidateServiceName("name", req.GetName()); err != nil {
		return nil, GRPCError(err)
	}
	svc, err := s.engine.GetService(ctx, req.GetName())
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.GetServiceResponse{Service: svc}, nil
}

// ListServices implements RolloutService.ListServices.
func (s *RolloutService) ListServices(ctx context.Context, _ *flotillav1.ListServicesRequest) (*flotillav1.ListServicesResponse, error) {
	svcs, err := s.engine.ListServices(ctx)
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.ListServicesResponse{Services: svcs}, nil
}

// StartRollout implements RolloutService.StartRollout.
func (s *RolloutService) StartRollout(ctx context.Context, req *flotillav1.StartRolloutRequest) (*flotillav1.StartRolloutResponse, error) {
	if err := validateStart(req); err != nil {
		return nil, GRPCError(err)
	}
	r, err := s.engine.StartRollout(ctx, req, principalOf(ctx))
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.StartRolloutResponse{Rollout: r}, nil
}

func validateStart(req *flotillav1.StartRolloutRequest) error {
	if err := rollout.ValidateServiceName("service", req.GetService()); err != nil {
		return GRPCError(err)
	}
	if err := rollout.ValidateImage("image", req.GetImage()); err != nil {
		return GRPCError(err)
	}
	if err := validateShort("selector", req.GetSelector(), 1024); err != nil {
		return GRPCError(err)
	}
	if err := rollout.ValidateStrategy("strategy", req.GetStrategy()); err != nil {
		return GRPCError(err)
	}
	if err := validateShort("reason", req.GetReason(), maxRolloutReason); err != nil {
		return err
	}
	return GRPCError(rollout.ValidateStartReason(req))
}

// GetRollout implements RolloutService.GetRollout.
func (s *RolloutService) GetRollout(ctx context.Context, req *flotillav1.GetRolloutRequest) (*flotillav1.GetRolloutResponse, error) {
	if err := requireID("rollout_id", req.GetRolloutId()); err != nil {
		return nil, GRPCError(err)
	}
	r, err := s.engine.GetRollout(ctx, req.GetRolloutId())
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.GetRolloutResponse{Rollout: r}, nil
}

// ListRollouts implements RolloutService.ListRollouts.
func (s *RolloutService) ListRollouts(ctx context.Context, req *flotillav1.ListRolloutsRequest) (*flotillav1.ListRolloutsResponse, error) {
	q := store.RolloutQuery{Service: req.GetService(), Limit: defaultRolloutPage}
	if q.Service != "" {
		if err := rollout.ValidateServiceName("service", q.Service); err != nil {
			return nil, GRPCError(err)
		}
	}
	switch n := req.GetPageSize(); {
	case n < 0:
		return nil, invalid("page_size", "must not be negative")
	case n > maxRolloutPage:
		return nil, invalid("page_size", "%d is more than the maximum of %d", n, maxRolloutPage)
	case n > 0:
		q.Limit = int(n)
	}
	if err := boundStates(len(req.GetStates())); err != nil {
		return nil, err
	}
	for i, st := range req.GetStates() {
		if _, ok := flotillav1.RolloutState_name[int32(st)]; !ok || st == flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED {
			return nil, invalid("states", "entry %d: %v is not a rollout state", i, st)
		}
		q.States = append(q.States, int32(st))
	}
	if tok := req.GetPageToken(); tok != "" {
		var err error
		if q.Before, err = decodePageToken(listingRollouts, rolloutsFilter(req), tok); err != nil {
			return nil, err
		}
	}
	limit := q.Limit
	q.Limit++
	list, err := s.engine.ListRollouts(ctx, q)
	if err != nil {
		return nil, GRPCError(err)
	}
	resp := &flotillav1.ListRolloutsResponse{}
	if len(list) > limit {
		list = list[:limit]
		resp.NextPageToken = encodePageToken(listingRollouts, rolloutsFilter(req), list[limit-1].GetId())
	}
	resp.Rollouts = list
	return resp, nil
}

// rolloutsFilter is the filter a ListRollouts page token is bound to.
func rolloutsFilter(req *flotillav1.ListRolloutsRequest) string {
	return pageFilter(req.GetService(), enumList(req.GetStates()))
}

// WatchRollout implements RolloutService.WatchRollout.
func (s *RolloutService) WatchRollout(req *flotillav1.WatchRolloutRequest, stream grpc.ServerStreamingServer[flotillav1.WatchRolloutResponse]) error {
	if err := requireID("rollout_id", req.GetRolloutId()); err != nil {
		return GRPCError(err)
	}
	return GRPCError(s.engine.WatchRolloutAfter(stream.Context(), req.GetRolloutId(), req.GetAfterSequence(), func(ev *flotillav1.RolloutEvent) error {
		return stream.Send(&flotillav1.WatchRolloutResponse{Event: ev})
	}))
}

// PauseRollout implements RolloutService.PauseRollout.
func (s *RolloutService) PauseRollout(ctx context.Context, req *flotillav1.PauseRolloutRequest) (*flotillav1.PauseRolloutResponse, error) {
	if err := requireID("rollout_id", req.GetRolloutId()); err != nil {
		return nil, GRPCError(err)
	}
	if err := validateShort("reason", req.GetReason(), maxRolloutReason); err != nil {
		return nil, GRPCError(err)
	}
	r, err := s.engine.PauseRollout(ctx, req.GetRolloutId(), req.GetReason())
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.PauseRolloutResponse{Rollout: r}, nil
}

// ResumeRollout implements RolloutService.ResumeRollout.
func (s *RolloutService) ResumeRollout(ctx context.Context, req *flotillav1.ResumeRolloutRequest) (*flotillav1.ResumeRolloutResponse, error) {
	if err := requireID("rollout_id", req.GetRolloutId()); err != nil {
		return nil, GRPCError(err)
	}
	r, err := s.engine.ResumeRollout(ctx, req.GetRolloutId())
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.ResumeRolloutResponse{Rollout: r}, nil
}

// AbortRollout implements RolloutService.AbortRollout.
func (s *RolloutService) AbortRollout(ctx context.Context, req *flotillav1.AbortRolloutRequest) (*flotillav1.AbortRolloutResponse, error) {
	if err := requireID("rollout_id", req.GetRolloutId()); err != nil {
		return nil, GRPCError(err)
	}
	if err := validateShort("reason", req.GetReason(), maxRolloutReason); err != nil {
		return nil, GRPCError(err)
	}
	r, err := s.engine.AbortRollout(ctx, req.GetRolloutId(), req.GetReason(), req.GetRollback())
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.AbortRolloutResponse{Rollout: r}, nil
}

// RollbackService implements RolloutService.RollbackService.
func (s *RolloutService) RollbackService(ctx context.Context, req *flotillav1.RollbackServiceRequest) (*flotillav1.RollbackServiceResponse, error) {
	if err := rollout.ValidateServiceName("service", req.GetService()); err != nil {
		return nil, GRPCError(err)
	}
	if id := req.GetToRolloutId(); id != "" {
		if err := validateShort("to_rollout_id", id, maxShortString); err != nil {
			return nil, GRPCError(err)
		}
	}
	if err := rollout.ValidateStrategy("strategy", req.GetStrategy()); err != nil {
		return nil, GRPCError(err)
	}
	if err := validateShort("reason", req.GetReason(), maxRolloutReason); err != nil {
		return nil, GRPCError(err)
	}
	r, err := s.engine.RollbackService(ctx, req, principalOf(ctx))
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.RollbackServiceResponse{Rollout: r}, nil
}

const (
	defaultRemediationPage = 50
	maxRemediationPage     = 500
)

// ListRemediations implements RolloutService.ListRemediations.
func (s *RolloutService) ListRemediations(ctx context.Context, req *flotillav1.ListRemediationsRequest) (*flotillav1.ListRemediationsResponse, error) {
	q, err := remediationQuery(req)
	if err != nil {
		return nil, GRPCError(err)
	}
	if s.remediations == nil {
		return nil, GRPCError(fault.Unavailablef("this control plane keeps no remediation events"))
	}
	list, err := s.remediations.ListRemediations(ctx, q)
	if err != nil {
		return nil, GRPCError(fault.Store("listing remediation events failed", err))
	}
	resp := &flotillav1.ListRemediationsResponse{}
	for _, r := range list {
		resp.Events = append(resp.Events, remediation.EventProto(r))
	}
	return resp, nil
}

// remediationQuery validates a ListRemediations request.
func remediationQuery(req *flotillav1.ListRemediationsRequest) (store.RemediationQuery, error) {
	q := store.RemediationQuery{Service: req.GetService(), AgentID: req.GetAgentId(), Limit: defaultRemediationPage}
	if q.Service != "" {
		if err := rollout.ValidateServiceName("service", q.Service); err != nil {
			return q, err
		}
	}
	if err := validateShort("agent_id", q.AgentID, maxShortString); err != nil {
		return q, err
	}
	switch n := req.GetPageSize(); {
	case n < 0:
		return q, invalid("page_size", "must not be negative")
	case n > maxRemediationPage:
		return q, invalid("page_size", "%d is more than the maximum of %d", n, maxRemediationPage)
	case n > 0:
		q.Limit = int(n)
	}
	return q, nil
}
