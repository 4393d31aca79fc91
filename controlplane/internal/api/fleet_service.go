package api

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/selector"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
	"flotilla.dev/pkg/validate"
)

// Join token limits.
const (
	defaultJoinTokenTTL = time.Hour
	maxJoinTokenTTL     = 30 * 24 * time.Hour
	maxJoinTokenUses    = 100000
)

// FleetServiceConfig configures the operator-facing fleet service.
type FleetServiceConfig struct {
	Store    store.TokenStore
	Registry FleetView
	CA       CertificateAuthority
	Logger   *zap.Logger
	Now      func() time.Time
	// Commands starts and follows fleet commands.
	Commands FleetCommands
}

// FleetService implements flotilla.v1.FleetService.
type FleetService struct {
	flotillav1.UnimplementedFleetServiceServer
	cfg FleetServiceConfig
	log *zap.Logger
}

// NewFleetService validates cfg and returns the service.
func NewFleetService(cfg FleetServiceConfig) (*FleetService, error) {
	if cfg.Store == nil || cfg.Registry == nil || cfg.CA == nil || cfg.Commands == nil {
		return nil, errors.New("api: fleet service needs Store, Registry, CA and Commands")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &FleetService{cfg: cfg, log: cfg.Logger}, nil
}

// ListAgents implements FleetService.ListAgents.
func (s *FleetService) ListAgents(_ context.Context, req *flotillav1.ListAgentsRequest) (*flotillav1.ListAgentsResponse, error) {
	q, err := listAgentsQuery(req)
	if err != nil {
		return nil, err
	}
	page, more, total := s.cfg.Registry.List(q)
	resp := &flotillav1.ListAgentsResponse{TotalSize: int32(total)}
	for _, a := range page {
		resp.Agents = append(resp.Agents, agentToProto(a))
	}
	if more && len(page) > 0 {
		resp.NextPageToken = encodePageToken(listingAgents, agentsFilter(req), page[len(page)-1].Record.ID)
	}
	return resp, nil
}

// listAgentsQuery validates a ListAgents request and turns it into a query.
func listAgentsQuery(req *flotillav1.ListAgentsRequest) (fleet.Query, error) {
	sel, err := selector.Parse(req.GetSelector())
	if err != nil {
		return fleet.Query{}, invalid("selector", "%v", err)
	}
	q := fleet.Query{Selector: sel, Limit: defaultPageSize}
	switch n := req.GetPageSize(); {
	case n < 0:
		return fleet.Query{}, invalid("page_size", "must not be negative")
	case n > maxPageSize:
		return fleet.Query{}, invalid("page_size", "%d is more than the maximum of %d", n, maxPageSize)
	case n > 0:
		q.Limit = int(n)
	}
	if err := boundStates(len(req.GetStates())); err != nil {
		return fleet.Query{}, err
	}
	for i, st := range req.GetStates() {
		name, ok := stateFromProto[st]
		if !ok {
			return fleet.Query{}, invalid("states", "entry %d: %v is not a state to filter on (use AGENT_STATE_CONNECTED, AGENT_STATE_DISCONNECTED or AGENT_STATE_LOST)", i, st)
		}
		q.States = append(q.States, name)
	}
	if tok := req.GetPageToken(); tok != "" {
		after, err := decodePageToken(listingAgents, agentsFilter(req), tok)
		if err != nil {
			return fleet.Query{}, err
		}
		q.After = after
	}
	return q, nil
}

// agentsFilter is the filter a ListAgents page token is bound to.
func agentsFilter(req *flotillav1.ListAgentsRequest) string {
	return pageFilter(req.GetSelector(), enumList(req.GetStates()))
}

// GetAgent implements FleetService.GetAgent.
func (s *FleetService) GetAgent(_ context.Context, req *flotillav1.GetAgentRequest) (*flotillav1.GetAgentResponse, error) {
	id := req.GetAgentId()
	if id == "" {
		return nil, invalid("agent_id", "required")
	}
	if err := validateShort("agent_id", id, maxShortString); err != nil {
		return nil, err
	}
	a, ok := s.cfg.Registry.Get(id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "agent %q not found (FleetService.ListAgents shows the registered agents)", id)
	}
	return &flotillav1.GetAgentResponse{Agent: agentToProto(a)}, nil
}

// CreateJoinToken implements FleetService.CreateJoinToken.
func (s *FleetService) CreateJoinToken(ctx context.Context, req *flotillav1.CreateJoinTokenRequest) (*flotillav1.CreateJoinTokenResponse, error) {
	ttl, uses, err := validateCreateJoinToken(req)
	if err != nil {
		return nil, err
	}
	secret, hash, id, err := newToken(auth.JoinTokenPrefix, "jt-")
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	tok := store.JoinToken{
		ID: id, Hash: hash, Description: req.GetDescription(), Labels: req.GetLabels(),
		MaxUses: uses, CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	if err := s.cfg.Store.CreateJoinToken(ctx, tok); err != nil {
		s.log.Error("storing a join token failed", zap.Error(err))
		return nil, status.Error(codes.Unavailable, "the join token could not be stored; retry")
	}
	by := ""
	if p, ok := auth.PrincipalFrom(ctx); ok {
		by = p.String()
	}
	s.log.Info("join token created", zap.String("token_id", id), logging.Principal(by),
		zap.Int("max_uses", uses), zap.Time("expires_at", tok.ExpiresAt), zap.Any("labels", tok.Labels))
	return &flotillav1.CreateJoinTokenResponse{
		TokenId: id, Token: secret, ExpiresAt: timestamppb.New(tok.ExpiresAt),
		MaxUses: int32(uses), Labels: tok.Labels, CaCertSha256: s.cfg.CA.Fingerprint(),
	}, nil
}

// validateCreateJoinToken validates a CreateJoinToken request and returns
// the token's lifetime and number of uses with defaults filled in.
func validateCreateJoinToken(req *flotillav1.CreateJoinTokenRequest) (time.Duration, int, error) {
	ttl := defaultJoinTokenTTL
	if req.Ttl != nil {
		var err error
		if ttl, err = validate.Duration(req.GetTtl()); err != nil {
			return 0, 0, invalid("ttl", "%v", err)
		}
		if ttl <= 0 {
			return 0, 0, invalid("ttl", "must be positive")
		}
		if ttl > maxJoinTokenTTL {
			return 0, 0, invalid("ttl", "%s is longer than the maximum of %s", ttl, maxJoinTokenTTL)
		}
	}
	uses := 1
	switch n := req.GetMaxUses(); {
	case n < 0:
		return 0, 0, invalid("max_uses", "must not be negative")
	case n > maxJoinTokenUses:
		return 0, 0, invalid("max_uses", "%d is more than the maximum of %d", n, maxJoinTokenUses)
	case n > 0:
		uses = int(n)
	}
	if err := validateLabels("labels", req.GetLabels()); err != nil {
		return 0, 0, err
	}
	if err := validateShort("description", req.GetDescription(), maxDescription); err != nil {
		return 0, 0, err
	}
	return ttl, uses, nil
}

// newToken generates a new token: its secret (starting with prefix), the
// secret's hash to store and its ID (starting with idPrefix). A failure of
// the random source is codes.Internal.
func newToken(prefix, idPrefix string) (secret string, hash []byte, id string, err error) {
	secret, hash, err = auth.NewSecret(prefix)
	if err != nil {
		return "", nil, "", status.Error(codes.Internal, "could not generate a token")
	}
	id, err = auth.NewID(idPrefix)
	if err != nil {
		return "", nil, "", status.Error(codes.Internal, "could not generate a token ID")
	}
	return secret, hash, id, nil
}
