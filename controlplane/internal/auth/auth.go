package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"flotilla.dev/controlplane/internal/fault"
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
	// ID is the API token ID, the operator certificate's name, or the agent ID.
	ID   string
	Role Role
	// Certificate is set for an operator authenticated by a client
	// certificate (IssueOperatorCertificate) instead of a token.
	Certificate bool
}

// String names the principal as the audit trail does: "token:<id>",
// "operator-cert:<name>" or "agent:<id>".
func (p Principal) String() string {
	audit, _ := p.kindNames()
	return audit + ":" + p.ID
}

// describe names the principal in an error message: "token <id>",
// "operator certificate <name>" or "agent <id>".
func (p Principal) describe() string {
	_, prose := p.kindNames()
	return prose + " " + p.ID
}

// kindNames returns the names of the principal's kind in the audit trail
// and in prose.
func (p Principal) kindNames() (audit, prose string) {
	switch {
	case p.Kind == "agent":
		return "agent", "agent"
	case p.Certificate:
		return "operator-cert", "operator certificate"
	default:
		return "token", "token"
	}
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

	"/flotilla.v1.RolloutService/PutService":       {access: accessOperator, role: RoleOperator},
	"/flotilla.v1.RolloutService/GetService":       {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.RolloutService/ListServices":     {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.RolloutService/StartRollout":     {access: accessOperator, role: RoleOperator},
	"/flotilla.v1.RolloutService/GetRollout":       {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.RolloutService/ListRollouts":     {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.RolloutService/ListRemediations": {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.RolloutService/WatchRollout":     {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.RolloutService/PauseRollout":     {access: accessOperator, role: RoleOperator},
	"/flotilla.v1.RolloutService/ResumeRollout":    {access: accessOperator, role: RoleOperator},
	"/flotilla.v1.RolloutService/AbortRollout":     {access: accessOperator, role: RoleOperator},
	"/flotilla.v1.RolloutService/RollbackService":  {access: accessOperator, role: RoleOperator},

	"/flotilla.v1.BackupService/CreateBackupPolicy":  {access: accessOperator, role: RoleOperator},
	"/flotilla.v1.BackupService/UpdateBackupPolicy":  {access: accessOperator, role: RoleOperator},
	"/flotilla.v1.BackupService/DeleteBackupPolicy":  {access: accessOperator, role: RoleOperator},
	"/flotilla.v1.BackupService/GetBackupPolicy":     {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.BackupService/ListBackupPolicies":  {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.BackupService/ListBackups":         {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.BackupService/GetBackup":           {access: accessOperator, role: RoleViewer},
	"/flotilla.v1.BackupService/GetRetentionPreview": {access: accessOperator, role: RoleViewer},

	"/flotilla.v1.AgentService/RenewCertificate":         {access: accessAgent},
	"/flotilla.v1.AdminService/CreateAPIToken":           {access: accessOperator, role: RoleAdmin},
	"/flotilla.v1.AdminService/ListAPITokens":            {access: accessOperator, role: RoleAdmin},
	"/flotilla.v1.AdminService/RevokeAPIToken":           {access: accessOperator, role: RoleAdmin},
	"/flotilla.v1.AdminService/IssueOperatorCertificate": {access: accessOperator, role: RoleAdmin},
	"/flotilla.v1.AdminService/ListJoinTokens":           {access: accessOperator, role: RoleAdmin},
	"/flotilla.v1.AdminService/RevokeJoinToken":          {access: accessOperator, role: RoleAdmin},
	"/flotilla.v1.AdminService/DeregisterAgent":          {access: accessOperator, role: RoleAdmin},
	"/flotilla.v1.AdminService/ListAuditEvents":          {access: accessOperator, role: RoleOperator},

	// Notifications send fleet events outside, with secrets: admins only.
	"/flotilla.v1.NotificationService/": {access: accessOperator, role: RoleAdmin},
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

// AuthStore is what the Authenticator reads: operator tokens and agents.
type AuthStore interface {
	GetAPITokenByHash(ctx context.Context, hash []byte) (store.APIToken, error)
	GetAgent(ctx context.Context, id string) (store.Agent, error)
}

// Authenticator checks credentials against the store.
type Authenticator struct {
	store AuthStore
	now   func() time.Time
	// registered answers from memory whether an agent is registered (the
	// live fleet's registry), so that a fleet reconnecting at once after a
	// restart does not queue thousands of store reads; nil reads the store.
	registered func(id string) bool
}

// WithRegisteredAgents makes the Authenticator accept an agent certificate
// whose agent registered reports as registered, without a store read;
// agents it does not know are still looked up in the store, so that a
// deregistered agent is told so. registered must forget an agent as soon
// as it is deregistered.
func (a *Authenticator) WithRegisteredAgents(registered func(id string) bool) *Authenticator {
	a.registered = registered
	return a
}

// NewAuthenticator returns an Authenticator backed by st.
func NewAuthenticator(st AuthStore, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{store: st, now: now}
}

// AuthFunc authenticates a call; it fits go-grpc-middleware's auth
// interceptors and returns a context carrying the Principal.
//
// Operator methods take one credential: a bearer token (one authorization
// value) or an operator certificate (a verified client certificate with an
// operator identity and role); a call carrying both, or two authorization
// values, is refused whatever their order. Agent methods take only
// an agent's certificate, of an agent that is registered and not
// deregistered. An agent's certificate never authenticates an operator and
// an operator's never authenticates an agent.
func (a *Authenticator) AuthFunc(ctx context.Context) (context.Context, error) {
	method, _ := grpc.Method(ctx)
	pol := policyFor(method)
	switch pol.access {
	case accessOpen:
		return ctx, nil
	case accessAgent:
		p, err := a.agent(ctx)
		if err != nil {
			return nil, err
		}
		return WithPrincipal(ctx, p), nil
	case accessOperator:
		p, err := a.operator(ctx)
		if err != nil {
			return nil, err
		}
		noteCaller(ctx, p)
		if p.Role < pol.role {
			return nil, fault.PermissionDeniedf("%s needs role %s; %s has role %s", method, pol.role, p.describe(), p.Role)
		}
		return WithPrincipal(ctx, p), nil
	default:
		return nil, fault.PermissionDeniedf("method %s is not open to any caller", method)
	}
}

// agent authenticates an agent by its verified client certificate and
// checks in the store that the agent is still registered: a deregistered
// agent's certificate is refused from the moment it is deregistered, across
// restarts, whatever its expiry.
func (a *Authenticator) agent(ctx context.Context) (Principal, error) {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("authorization")) > 0 {
		// An agent never sends a token: a call that does is not decided
		// by which credential is looked at.
		return Principal{}, fault.Unauthenticatedf(
			"conflicting credentials: this method takes only the agent's client certificate; the call also carries authorization metadata")
	}
	cert, err := verifiedClientCert(ctx)
	if err == nil {
		var id string
		if id, err = pki.AgentIDFromCertificate(cert); err == nil {
			return a.registeredAgent(ctx, cert, id)
		}
	}
	return Principal{}, fault.Unauthenticatedf("this method needs the agent's client certificate issued by Register: %v", err)
}

func (a *Authenticator) registeredAgent(ctx context.Context, cert *x509.Certificate, id string) (Principal, error) {
	p := Principal{Kind: "agent", ID: id}
	noteCaller(ctx, p)
	if !a.now().Before(cert.NotAfter) {
		// TLS checked the expiry at the handshake; a long-lived connection
		// may outlive the certificate.
		return Principal{}, fault.Unauthenticatedf("the client certificate of agent %s expired at %s; register the host again with a new join token",
			id, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if a.registered != nil && a.registered(id) {
		return p, nil
	}
	rec, err := a.store.GetAgent(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, fault.Unauthenticatedf("agent %s is not registered with this control plane; remove the agent's state directory and register again with a join token", id)
	}
	if err != nil {
		return Principal{}, fault.Unavailablef("cannot check the agent's registration: store unavailable")
	}
	if !rec.DeregisteredAt.IsZero() {
		return Principal{}, fault.Unauthenticatedf("%s", DeregisteredMessage(id, rec.DeregisteredAt, rec.DeregisterReason))
	}
	return p, nil
}

// DeregisteredMessage is what a deregistered agent is told, by the auth
// layer and by the stream that deregistration closes.
func DeregisteredMessage(id string, at time.Time, reason string) string {
	msg := fmt.Sprintf("agent %s was deregistered by an admin at %s", id, at.UTC().Format(time.RFC3339))
	if reason != "" {
		msg += " (" + reason + ")"
	}
	return msg + "; its certificate is no longer accepted: register the host again with a new join token"
}

// missingCredentials is the answer to an operator method called with
// neither a token nor an operator certificate.
var missingCredentials = fault.Unauthenticatedf(
	`missing credentials: send the metadata "authorization: Bearer <token>" or present an operator certificate`)

func (a *Authenticator) operator(ctx context.Context) (Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	authz := md.Get("authorization")
	cert, certErr := verifiedClientCert(ctx)
	switch {
	case len(authz) > 1:
		return Principal{}, fault.Unauthenticatedf(
			"conflicting credentials: the call carries %d authorization metadata values; send exactly one", len(authz))
	case len(authz) == 0 && certErr != nil:
		return Principal{}, missingCredentials
	case len(authz) == 0:
		return a.operatorCertificate(cert)
	case certErr == nil:
		// Neither credential wins by order: the caller says which one it means.
		return Principal{}, fault.Unauthenticatedf(
			"conflicting credentials: the call carries a bearer token and the client certificate of %s; send only one of them", certIdentity(cert))
	}
	secret, err := bearerToken(ctx)
	if err != nil {
		return Principal{}, err
	}
	tok, err := a.store.GetAPITokenByHash(ctx, HashSecret(secret))
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, fault.Unauthenticatedf("invalid API token")
	}
	if err != nil {
		return Principal{}, fault.Unavailablef("cannot check the API token: store unavailable")
	}
	now := a.now()
	if !tok.Active(now) {
		return Principal{}, fault.Unauthenticatedf("invalid API token")
	}
	role, err := ParseRole(tok.Role)
	if err != nil {
		return Principal{}, fmt.Errorf("token %s has an unknown role", tok.ID)
	}
	return Principal{Kind: "operator", ID: tok.ID, Role: role}, nil
}

// operatorCertificate authenticates an operator by a verified client
// certificate that IssueOperatorCertificate signed. The role is the one the
// certificate carries.
func (a *Authenticator) operatorCertificate(cert *x509.Certificate) (Principal, error) {
	name, roleName, err := pki.OperatorFromCertificate(cert)
	if err != nil {
		if _, agentErr := pki.AgentIDFromCertificate(cert); agentErr == nil {
			return Principal{}, fault.Unauthenticatedf("%v (an agent's certificate never authenticates an operator)", missingCredentials)
		}
		return Principal{}, missingCredentials
	}
	if !a.now().Before(cert.NotAfter) {
		return Principal{}, fault.Unauthenticatedf("operator certificate %s expired at %s; ask an admin for a new one",
			name, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	role, err := ParseRole(roleName)
	if err != nil {
		return Principal{}, fault.Unauthenticatedf("operator certificate %s carries an unknown role", name)
	}
	return Principal{Kind: "operator", ID: name, Role: role, Certificate: true}, nil
}

// certIdentity says whose a verified client certificate is, in the words
// of an error message.
func certIdentity(cert *x509.Certificate) string {
	if name, role, err := pki.OperatorFromCertificate(cert); err == nil {
		return fmt.Sprintf("operator %s (role %s)", name, role)
	}
	if id, err := pki.AgentIDFromCertificate(cert); err == nil {
		return "agent " + id
	}
	return "a caller without an operator identity"
}

func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", missingCredentials
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return "", fault.Unauthenticatedf(`malformed authorization metadata: want "Bearer <token>"`)
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
