package api

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/fleet"
	cplog "flotilla.dev/controlplane/internal/logging"
	"flotilla.dev/controlplane/internal/pki"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
	"flotilla.dev/pkg/validate"
)

// Limits of the admin API.
const (
	maxAPITokenTTL            = 365 * 24 * time.Hour
	defaultOperatorCertTTL    = 24 * time.Hour
	maxOperatorCertTTL        = 30 * 24 * time.Hour
	minOperatorCertTTL        = time.Minute
	defaultAuditPage          = 100
	maxAuditPage              = 1000
	maxNameLength             = 64
	maxDeregisterReasonLength = maxDescription
)

var (
	apiTokenName     = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)
	operatorCertName = regexp.MustCompile(`^[a-zA-Z0-9_.@-]+$`)
)

// AdminServiceStore is what the admin service reads and changes: tokens,
// agent identities and the audit trail.
type AdminServiceStore interface {
	store.TokenStore
	store.IdentityStore
	store.AuditStore
}

// AdminServiceConfig configures the admin service.
type AdminServiceConfig struct {
	Store    AdminServiceStore
	Registry AgentRemover
	CA       CertificateAuthority
	Logger   *zap.Logger
	Now      func() time.Time
}

// AdminService implements flotilla.v1.AdminService.
type AdminService struct {
	flotillav1.UnimplementedAdminServiceServer
	cfg AdminServiceConfig
	log *zap.Logger
}

// NewAdminService validates cfg and returns the service.
func NewAdminService(cfg AdminServiceConfig) (*AdminService, error) {
	if cfg.Store == nil || cfg.Registry == nil || cfg.CA == nil {
		return nil, errors.New("api: admin service needs Store, Registry and CA")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &AdminService{cfg: cfg, log: cfg.Logger}, nil
}

// caller names the caller for created_by fields and logs.
func caller(ctx context.Context) string {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		return p.String()
	}
	return "anonymous"
}

// storeUnavailable logs a store failure and answers Unavailable without
// its details (they may name internals, never secrets).
func (s *AdminService) storeUnavailable(what string, err error) error {
	s.log.Error(what+" failed", zap.Error(err))
	return status.Errorf(codes.Unavailable, "%s failed: store unavailable; retry", what)
}

// CreateAPIToken implements AdminService.CreateAPIToken.
func (s *AdminService) CreateAPIToken(ctx context.Context, req *flotillav1.CreateAPITokenRequest) (*flotillav1.CreateAPITokenResponse, error) {
	role, ttl, err := validateCreateAPIToken(req)
	if err != nil {
		return nil, err
	}
	secret, hash, id, err := newToken(auth.APITokenPrefix, "at-")
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	tok := store.APIToken{ID: id, Name: req.GetName(), Hash: hash, Role: role.String(), CreatedAt: now, CreatedBy: caller(ctx)}
	if ttl > 0 {
		tok.ExpiresAt = now.Add(ttl)
	}
	if err := s.cfg.Store.CreateAPIToken(ctx, tok); err != nil {
		return nil, s.storeUnavailable("storing an API token", err)
	}
	s.log.Info("API token created", zap.String("token_id", id), zap.String("name", tok.Name), zap.String("role", tok.Role),
		logging.Principal(tok.CreatedBy), zap.Time("expires_at", tok.ExpiresAt))
	return &flotillav1.CreateAPITokenResponse{Token: apiTokenToProto(tok), Secret: secret}, nil
}

// validateCreateAPIToken validates a CreateAPIToken request and returns the
// role and lifetime (0: no expiry).
func validateCreateAPIToken(req *flotillav1.CreateAPITokenRequest) (auth.Role, time.Duration, error) {
	if err := validateName("name", req.GetName(), apiTokenName, "letters, digits, '_', '.' and '-'"); err != nil {
		return 0, 0, err
	}
	role, err := roleFromProto("role", req.GetRole())
	if err != nil {
		return 0, 0, err
	}
	var ttl time.Duration
	if req.Ttl != nil {
		if ttl, err = validateTTL("ttl", req.GetTtl(), time.Second, maxAPITokenTTL); err != nil {
			return 0, 0, err
		}
	}
	return role, ttl, nil
}

// ListAPITokens implements AdminService.ListAPITokens.
func (s *AdminService) ListAPITokens(ctx context.Context, req *flotillav1.ListAPITokensRequest) (*flotillav1.ListAPITokensResponse, error) {
	toks, err := s.cfg.Store.ListAPITokens(ctx)
	if err != nil {
		return nil, s.storeUnavailable("listing API tokens", err)
	}
	now := s.cfg.Now()
	resp := &flotillav1.ListAPITokensResponse{}
	for _, t := range toks {
		if req.GetIncludeInactive() || t.Active(now) {
			resp.Tokens = append(resp.Tokens, apiTokenToProto(t))
		}
	}
	return resp, nil
}

// RevokeAPIToken implements AdminService.RevokeAPIToken. The last active
// admin token cannot be revoked: nobody could create another one.
func (s *AdminService) RevokeAPIToken(ctx context.Context, req *flotillav1.RevokeAPITokenRequest) (*flotillav1.RevokeAPITokenResponse, error) {
	if err := requireID("token_id", req.GetTokenId()); err != nil {
		return nil, err
	}
	tok, err := s.cfg.Store.GetAPIToken(ctx, req.GetTokenId())
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "API token %q not found (AdminService.ListAPITokens shows them)", req.GetTokenId())
	}
	if err != nil {
		return nil, s.storeUnavailable("reading an API token", err)
	}
	now := s.cfg.Now()
	if tok.Role == auth.RoleAdmin.String() && tok.Active(now) {
		all, err := s.cfg.Store.ListAPITokens(ctx)
		if err != nil {
			return nil, s.storeUnavailable("listing API tokens", err)
		}
		admins := 0
		for _, t := range all {
			if t.Role == auth.RoleAdmin.String() && t.Active(now) {
				admins++
			}
		}
		if admins <= 1 {
			return nil, status.Errorf(codes.FailedPrecondition, "token %s is the last active admin token; create another admin token first", tok.ID)
		}
	}
	tok, err = s.cfg.Store.RevokeAPIToken(ctx, tok.ID, now)
	if err != nil {
		return nil, s.storeUnavailable("revoking an API token", err)
	}
	s.log.Info("API token revoked", zap.String("token_id", tok.ID), zap.String("name", tok.Name), logging.Principal(caller(ctx)))
	return &flotillav1.RevokeAPITokenResponse{Token: apiTokenToProto(tok)}, nil
}

// IssueOperatorCertificate implements AdminService.IssueOperatorCertificate.
func (s *AdminService) IssueOperatorCertificate(ctx context.Context, req *flotillav1.IssueOperatorCertificateRequest) (*flotillav1.IssueOperatorCertificateResponse, error) {
	role, ttl, err := validateIssueOperatorCertificate(req)
	if err != nil {
		return nil, err
	}
	cert, certPEM, err := s.cfg.CA.SignOperator(req.GetCsr(), req.GetName(), role.String(), ttl)
	if err != nil {
		return nil, csrError(s.log, "signing the operator certificate", err)
	}
	serial := pki.SerialHex(cert)
	s.log.Info("operator certificate issued", zap.String("name", req.GetName()), zap.String("role", role.String()),
		zap.String("serial", serial), zap.Time("not_after", cert.NotAfter), logging.Principal(caller(ctx)))
	return &flotillav1.IssueOperatorCertificateResponse{
		CertificatePem: certPEM, CaBundlePem: s.cfg.CA.CertificatePEM(), Serial: serial, ExpiresAt: timestamppb.New(cert.NotAfter),
	}, nil
}

// validateIssueOperatorCertificate validates an IssueOperatorCertificate
// request (its CSR included) and returns the role and lifetime.
func validateIssueOperatorCertificate(req *flotillav1.IssueOperatorCertificateRequest) (auth.Role, time.Duration, error) {
	if err := validateName("name", req.GetName(), operatorCertName, "letters, digits, '_', '.', '@' and '-'"); err != nil {
		return 0, 0, err
	}
	role, err := roleFromProto("role", req.GetRole())
	if err != nil {
		return 0, 0, err
	}
	switch csr := req.GetCsr(); {
	case len(csr) == 0:
		return 0, 0, invalid("csr", "required: a PKCS#10 certificate signing request for the operator's key")
	case len(csr) > maxCSRBytes:
		return 0, 0, invalid("csr", "%d bytes, at most %d allowed", len(csr), maxCSRBytes)
	}
	if _, err := pki.ParseCSR(req.GetCsr()); err != nil {
		return 0, 0, csrInvalid(err)
	}
	ttl := defaultOperatorCertTTL
	if req.Ttl != nil {
		if ttl, err = validateTTL("ttl", req.GetTtl(), minOperatorCertTTL, maxOperatorCertTTL); err != nil {
			return 0, 0, err
		}
	}
	return role, ttl, nil
}

// ListJoinTokens implements AdminService.ListJoinTokens.
func (s *AdminService) ListJoinTokens(ctx context.Context, req *flotillav1.ListJoinTokensRequest) (*flotillav1.ListJoinTokensResponse, error) {
	toks, err := s.cfg.Store.ListJoinTokens(ctx)
	if err != nil {
		return nil, s.storeUnavailable("listing join tokens", err)
	}
	now := s.cfg.Now()
	resp := &flotillav1.ListJoinTokensResponse{}
	for _, t := range toks {
		if req.GetIncludeInactive() || t.Admits(now) {
			resp.Tokens = append(resp.Tokens, joinTokenToProto(t))
		}
	}
	return resp, nil
}

// RevokeJoinToken implements AdminService.RevokeJoinToken.
func (s *AdminService) RevokeJoinToken(ctx context.Context, req *flotillav1.RevokeJoinTokenRequest) (*flotillav1.RevokeJoinTokenResponse, error) {
	if err := requireID("token_id", req.GetTokenId()); err != nil {
		return nil, err
	}
	tok, err := s.cfg.Store.RevokeJoinToken(ctx, req.GetTokenId(), s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "join token %q not found (AdminService.ListJoinTokens shows them)", req.GetTokenId())
	}
	if err != nil {
		return nil, s.storeUnavailable("revoking a join token", err)
	}
	s.log.Info("join token revoked", zap.String("token_id", tok.ID), logging.Principal(caller(ctx)))
	return &flotillav1.RevokeJoinTokenResponse{Token: joinTokenToProto(tok)}, nil
}

// DeregisterAgent implements AdminService.DeregisterAgent: the agent is
// marked deregistered in the store first (so that a restart keeps refusing
// it), then its stream is closed and it leaves the fleet. Deregistering an
// agent twice changes nothing and succeeds.
func (s *AdminService) DeregisterAgent(ctx context.Context, req *flotillav1.DeregisterAgentRequest) (*flotillav1.DeregisterAgentResponse, error) {
	if err := validateDeregister(req); err != nil {
		return nil, err
	}
	a, err := s.cfg.Store.DeregisterAgent(ctx, req.GetAgentId(), s.cfg.Now(), req.GetReason())
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "agent %q not found (FleetService.ListAgents shows the registered agents)", req.GetAgentId())
	}
	if err != nil {
		return nil, s.storeUnavailable("deregistering an agent", err)
	}
	msg := auth.DeregisteredMessage(a.ID, a.DeregisteredAt, a.DeregisterReason)
	closed := s.cfg.Registry.Remove(a.ID, &fleet.DeregisteredError{Message: msg})
	s.log.Warn("agent deregistered; its certificate is refused from now on", logging.AgentID(a.ID),
		zap.String("reason", a.DeregisterReason), logging.Principal(caller(ctx)), zap.Bool("was_in_fleet", closed))
	return &flotillav1.DeregisterAgentResponse{}, nil
}

func validateDeregister(req *flotillav1.DeregisterAgentRequest) error {
	if err := requireID("agent_id", req.GetAgentId()); err != nil {
		return err
	}
	return validateShort("reason", req.GetReason(), maxDeregisterReasonLength)
}

// ListAuditEvents implements AdminService.ListAuditEvents.
func (s *AdminService) ListAuditEvents(ctx context.Context, req *flotillav1.ListAuditEventsRequest) (*flotillav1.ListAuditEventsResponse, error) {
	q, err := auditQuery(req)
	if err != nil {
		return nil, err
	}
	limit := q.Limit
	q.Limit++ // one more tells whether another page follows
	evs, err := s.cfg.Store.ListAuditEvents(ctx, q)
	if err != nil {
		return nil, s.storeUnavailable("listing audit events", err)
	}
	resp := &flotillav1.ListAuditEventsResponse{}
	if len(evs) > limit {
		evs = evs[:limit]
		resp.NextPageToken = encodePageToken(listingAuditEvents, auditFilter(req), strconv.FormatInt(evs[limit-1].ID, 10))
	}
	for _, e := range evs {
		resp.Events = append(resp.Events, auditEventToProto(e))
	}
	return resp, nil
}

// auditQuery validates a ListAuditEvents request and turns it into a query.
func auditQuery(req *flotillav1.ListAuditEventsRequest) (store.AuditQuery, error) {
	q := store.AuditQuery{Principal: req.GetPrincipal(), Method: req.GetMethod(), RequestID: req.GetRequestId(),
		FailedOnly: req.GetFailedOnly(), Limit: defaultAuditPage}
	if err := validateShort("principal", q.Principal, maxShortString); err != nil {
		return store.AuditQuery{}, err
	}
	if err := validateAuditRequestID(q.RequestID); err != nil {
		return store.AuditQuery{}, err
	}
	if err := validateShort("method", q.Method, maxShortString); err != nil {
		return store.AuditQuery{}, err
	}
	if q.Method != "" && !strings.HasPrefix(q.Method, "/") {
		return store.AuditQuery{}, invalid("method", "a full method name such as /flotilla.v1.AdminService/CreateAPIToken")
	}
	if req.Since != nil {
		since, err := validate.Timestamp(req.GetSince())
		if err != nil {
			return store.AuditQuery{}, invalid("since", "%v", err)
		}
		q.Since = since
	}
	switch n := req.GetPageSize(); {
	case n < 0:
		return store.AuditQuery{}, invalid("page_size", "must not be negative")
	case n > maxAuditPage:
		return store.AuditQuery{}, invalid("page_size", "%d is more than the maximum of %d", n, maxAuditPage)
	case n > 0:
		q.Limit = int(n)
	}
	if tok := req.GetPageToken(); tok != "" {
		id, err := decodePageToken(listingAuditEvents, auditFilter(req), tok)
		if err != nil {
			return store.AuditQuery{}, err
		}
		before, err := strconv.ParseInt(id, 10, 64)
		if err != nil || before <= 0 {
			return store.AuditQuery{}, invalid("page_token", "not a token from a previous ListAuditEvents response; leave it empty for the first page")
		}
		q.BeforeID = before
	}
	return q, nil
}

// validateAuditRequestID checks a ListAuditEvents request_id filter: an
// ID the control plane could have given a call (empty: no filter).
func validateAuditRequestID(id string) error {
	if id == "" || cplog.ValidRequestID(id) {
		return nil
	}
	if len(id) > cplog.MaxRequestIDLen {
		return invalid("request_id", "%d characters, at most %d allowed", len(id), cplog.MaxRequestIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return invalid("request_id", "%s at offset %d not allowed (a request ID is printable ASCII without spaces)", validate.CharAt(id, i), i)
		}
	}
	return invalid("request_id", "not a request ID")
}

// auditFilter is the filter a ListAuditEvents page token is bound to. The
// request ID is bound only when set, so that tokens of listings without it
// stay as they were.
func auditFilter(req *flotillav1.ListAuditEventsRequest) string {
	since := ""
	if req.Since != nil {
		since = req.GetSince().AsTime().UTC().Format(time.RFC3339Nano)
	}
	parts := []string{req.GetPrincipal(), req.GetMethod(), strconv.FormatBool(req.GetFailedOnly()), since}
	if id := req.GetRequestId(); id != "" {
		parts = append(parts, id)
	}
	return pageFilter(parts...)
}

func validateName(field, name string, pattern *regexp.Regexp, allowed string) error {
	switch {
	case name == "":
		return invalid(field, "required")
	case len(name) > maxNameLength:
		return invalid(field, "%d characters, at most %d allowed", len(name), maxNameLength)
	case !pattern.MatchString(name):
		return invalid(field, "only %s are allowed", allowed)
	}
	return nil
}

func validateTTL(field string, d *durationpb.Duration, lo, hi time.Duration) (time.Duration, error) {
	ttl, err := validate.Duration(d)
	if err != nil {
		return 0, invalid(field, "%v", err)
	}
	switch {
	case ttl <= 0:
		return 0, invalid(field, "must be positive")
	case ttl < lo:
		return 0, invalid(field, "%s is shorter than the minimum of %s", ttl, lo)
	case ttl > hi:
		return 0, invalid(field, "%s is longer than the maximum of %s", ttl, hi)
	}
	return ttl, nil
}

func roleFromProto(field string, r flotillav1.Role) (auth.Role, error) {
	switch r {
	case flotillav1.Role_ROLE_VIEWER, flotillav1.Role_ROLE_OPERATOR, flotillav1.Role_ROLE_ADMIN:
		return auth.Role(r), nil // the numbers are the same by design
	}
	return 0, invalid(field, "%v is not a role (use ROLE_VIEWER, ROLE_OPERATOR or ROLE_ADMIN)", r)
}

func roleToProto(name string) flotillav1.Role {
	r, err := auth.ParseRole(name)
	if err != nil {
		return flotillav1.Role_ROLE_UNSPECIFIED
	}
	return flotillav1.Role(r)
}

func apiTokenToProto(t store.APIToken) *flotillav1.APIToken {
	return &flotillav1.APIToken{
		Id: t.ID, Name: t.Name, Role: roleToProto(t.Role), CreatedAt: ts(t.CreatedAt),
		ExpiresAt: ts(t.ExpiresAt), RevokedAt: ts(t.RevokedAt), CreatedBy: t.CreatedBy,
	}
}

func joinTokenToProto(t store.JoinToken) *flotillav1.JoinToken {
	return &flotillav1.JoinToken{
		Id: t.ID, Description: t.Description, Labels: t.Labels, MaxUses: int32(t.MaxUses), Uses: int32(t.Uses),
		CreatedAt: ts(t.CreatedAt), ExpiresAt: ts(t.ExpiresAt), RevokedAt: ts(t.RevokedAt),
	}
}

func auditEventToProto(e store.AuditEvent) *flotillav1.AuditEvent {
	return &flotillav1.AuditEvent{
		Id: e.ID, At: ts(e.At), Principal: e.Principal, Role: roleToProto(e.Role), Method: e.Method,
		Request: e.Request, Peer: e.Peer, Code: e.Code, Message: e.Message, Duration: durationpb.New(e.Duration),
		RequestId: e.RequestID,
	}
}
