package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"flotilla.dev/controlplane/internal/pki"
	"flotilla.dev/controlplane/internal/store"
)

// Role is an operator's level of access. Higher roles include lower ones.
type Role int

// Roles, lowest first.
const (
	RoleNone Role = iota
	RoleViewer
	RoleOperator
	RoleAdmin
)

// String returns the role's stored name.
func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	default:
		return "none"
	}
}

// ParseRole parses a stored role name.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "operator":
		return RoleOperator, nil
	case "admin":
		return RoleAdmin, nil
	default:
		return RoleNone, errors.New("unknown role " + s)
	}
}

// Principal is who is calling.
type Principal struct {
	// Kind is "operator" or "agent".
	Kind string
	// ID is the API token ID or the agent ID.
	ID   string
	Role Role
}

type principalKey struct{}

// PrincipalFrom returns the authenticated caller, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p; tests and in-process callers use it.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// access is how a method is authenticated.
type access int

const (
	accessDenied   access = iota
	accessOpen            // no credential: health, reflection, registration
	accessAgent           // a client certificate issued to an agent
	accessOperator        // a bearer token with at least the method's role
)

type policy struct {
	access access
	role   Role
}

// policies maps a full method name, or a service prefix ending in "/", to how
// it is authenticated. A method with no policy is denied: new RPCs are closed
// until someone decides who may call them.
var policies = map[string]policy{
	"/grpc.health.v1.Health/":                    {access: accessOpen},
	"/grpc.reflection.v1.ServerReflection/":      {access: accessOpen},
	"/grpc.reflection.v1alpha.ServerReflection/": {access: accessOpen},
	"/flotilla.v1.AgentService/Register":         {access: accessOpen},
	"/flotilla.v1.AgentService/Connect":          {access: accessAgent},
	"/flotilla.v1.FleetService/ListAgents":       {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.FleetService/GetAgent":         {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.FleetService/CreateJoinToken":  {access: accessOperator, role: RoleAdmin},
	"/flotilla.v1.FleetService/RunCommand":       {access: accessOperator, role: RoleOperator},
	"/flotilla.v1.FleetService/CancelCommand":    {access: accessOperator, role: RoleOperator},
	"/flotilla.v1.FleetService/GetCommand":       {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.FleetService/ListCommands":     {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.FleetService/WatchCommand":     {access: accessOperator, role: RoleViewer},
}

func policyFor(method string) policy {
	if p, ok := policies[method]; ok {
		return p
	}
	if i := strings.LastIndexByte(method, '/'); i > 0 {
		if p, ok := policies[method[:i+1]]; ok {
			return p
		}
	}
	return policy{access: accessDenied}
}

// Authenticator checks credentials against the store.
type Authenticator struct {
	store store.Store
	now   func() time.Time
}

// NewAuthenticator returns an Authenticator backed by st.
func NewAuthenticator(st store.Store, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{store: st, now: now}
}

// AuthFunc authenticates a call; it fits go-grpc-middleware's auth
// interceptors and returns a context carrying the Principal.
func (a *Authenticator) AuthFunc(ctx context.Context) (context.Context, error) {
	method, _ := grpc.Method(ctx)
	pol := policyFor(method)
	switch pol.access {
	case accessOpen:
		return ctx, nil
	case accessAgent:
		id, err := AgentIDFromPeer(ctx)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, "this method needs the agent's client certificate issued by Register: "+err.Error())
		}
		return WithPrincipal(ctx, Principal{Kind: "agent", ID: id}), nil
	case accessOperator:
		p, err := a.operator(ctx)
		if err != nil {
			return nil, err
		}
		if p.Role < pol.role {
			return nil, status.Errorf(codes.PermissionDenied, "%s needs role %s; token %s has role %s", method, pol.role, p.ID, p.Role)
		}
		return WithPrincipal(ctx, p), nil
	default:
		return nil, status.Errorf(codes.PermissionDenied, "method %s is not open to any caller", method)
	}
}

func (a *Authenticator) operator(ctx context.Context) (Principal, error) {
	secret, err := bearerToken(ctx)
	if err != nil {
		return Principal{}, err
	}
	tok, err := a.store.GetAPITokenByHash(ctx, HashSecret(secret))
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, status.Error(codes.Unauthenticated, "invalid API token")
	}
	if err != nil {
		return Principal{}, status.Error(codes.Unavailable, "cannot check the API token: store unavailable")
	}
	now := a.now()
	if !tok.RevokedAt.IsZero() || (!tok.ExpiresAt.IsZero() && !now.Before(tok.ExpiresAt)) {
		return Principal{}, status.Error(codes.Unauthenticated, "invalid API token")
	}
	role, err := ParseRole(tok.Role)
	if err != nil {
		return Principal{}, status.Errorf(codes.Internal, "token %s has an unknown role", tok.ID)
	}
	return Principal{Kind: "operator", ID: tok.ID, Role: role}, nil
}

func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", status.Error(codes.Unauthenticated, `missing credentials: send the metadata "authorization: Bearer <token>"`)
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return "", status.Error(codes.Unauthenticated, `malformed authorization metadata: want "Bearer <token>"`)
	}
	return strings.TrimSpace(token), nil
}

// AgentIDFromPeer returns the agent ID from the verified client certificate
// of the call's TLS connection.
func AgentIDFromPeer(ctx context.Context) (string, error) {
	cert, err := verifiedClientCert(ctx)
	if err != nil {
		return "", err
	}
	return pki.AgentIDFromCertificate(cert)
}

func verifiedClientCert(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil, errors.New("no TLS connection")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, errors.New("no TLS connection")
	}
	if len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, errors.New("no verified client certificate")
	}
	return info.State.VerifiedChains[0][0], nil
}
