package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/api"
	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/pki"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	})
	return st
}

// fakeStream is the server transport stream grpc.Method reads the method from.
type fakeStream struct{ method string }

func (s fakeStream) Method() string               { return s.method }
func (s fakeStream) SetHeader(metadata.MD) error  { return nil }
func (s fakeStream) SendHeader(metadata.MD) error { return nil }
func (s fakeStream) SetTrailer(metadata.MD) error { return nil }

// otherAuth is a non-TLS AuthInfo.
type otherAuth struct{}

func (otherAuth) AuthType() string { return "other" }

// callCtx builds the context an interceptor sees: the method, optional
// authorization metadata and an optional peer.
func callCtx(method string, authz []string, p *peer.Peer) context.Context {
	ctx := context.Background()
	if method != "" {
		ctx = grpc.NewContextWithServerTransportStream(ctx, fakeStream{method: method})
	}
	if authz != nil {
		md := metadata.MD{}
		for _, v := range authz {
			md.Append("authorization", v)
		}
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	if p != nil {
		ctx = peer.NewContext(ctx, p)
	}
	return ctx
}

func tlsPeer(chains ...[]*x509.Certificate) *peer.Peer {
	return &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: chains}}}
}

// testCA returns a CA, a certificate it issued to agent ag-7k2m9q4x and its
// server certificate (which carries no agent identity).
func testCA(t *testing.T) (ca *pki.CA, agentCert, serverCert *x509.Certificate) {
	t.Helper()
	ca, _, err := pki.NewCA("test CA", 24*time.Hour, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ag-impostor"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	agentCert, _, err = ca.SignAgent(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), "ag-7k2m9q4x", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	chain, _, err := ca.IssueServer([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err = pki.ParseCertificatePEM(chain)
	if err != nil {
		t.Fatal(err)
	}
	return ca, agentCert, serverCert
}

type tokens struct {
	viewer, operator, admin, expired, expiresLater, revoked, badRole string
}

// seedTokens stores one API token per case and returns their secrets. Each
// token's ID is its case name.
func seedTokens(t *testing.T, st store.Store) tokens {
	t.Helper()
	mk := func(id, role string, expires, revoked time.Time) string {
		secret, hash, err := auth.NewSecret(auth.APITokenPrefix)
		if err != nil {
			t.Fatal(err)
		}
		tok := store.APIToken{ID: id, Name: id, Hash: hash, Role: role, CreatedAt: t0.Add(-time.Hour), ExpiresAt: expires, RevokedAt: revoked}
		if err := st.CreateAPIToken(context.Background(), tok); err != nil {
			t.Fatalf("CreateAPIToken(%s): %v", id, err)
		}
		return secret
	}
	var never time.Time
	return tokens{
		viewer:       mk("at-viewer", "viewer", never, never),
		operator:     mk("at-operator", "operator", never, never),
		admin:        mk("at-admin", "admin", never, never),
		expired:      mk("at-expired", "admin", t0, never), // expires exactly now
		expiresLater: mk("at-later", "admin", t0.Add(time.Second), never),
		revoked:      mk("at-revoked", "admin", never, t0.Add(-time.Minute)),
		badRole:      mk("at-badrole", "root", never, never),
	}
}

const (
	listAgents      = flotillav1.FleetService_ListAgents_FullMethodName
	getAgent        = flotillav1.FleetService_GetAgent_FullMethodName
	createJoinToken = flotillav1.FleetService_CreateJoinToken_FullMethodName
	register        = flotillav1.AgentService_Register_FullMethodName
	connect         = flotillav1.AgentService_Connect_FullMethodName
	renew           = flotillav1.AgentService_RenewCertificate_FullMethodName
	createAPIToken  = flotillav1.AdminService_CreateAPIToken_FullMethodName
	listAudit       = flotillav1.AdminService_ListAuditEvents_FullMethodName
)

// signCSR returns a fresh key's CSR, PEM.
func signCSR(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})
}

// registerAgent stores agent id through a join token of its own.
func registerAgent(t *testing.T, st store.Store, id string) {
	t.Helper()
	secret, hash, err := auth.NewSecret(auth.JoinTokenPrefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := st.CreateJoinToken(ctx, store.JoinToken{ID: "jt-" + id, Hash: hash, MaxUses: 1, CreatedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_, err = st.RegisterAgent(ctx, auth.HashSecret(secret), t0, func(store.JoinToken) (store.Agent, error) {
		return store.Agent{ID: id, Hostname: id, State: store.AgentDisconnected}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAuthFunc(t *testing.T) {
	st := openStore(t)
	tok := seedTokens(t, st)
	ca, agentCert, serverCert := testCA(t)
	registerAgent(t, st, "ag-7k2m9q4x")
	// Certificates of agents the store does not admit.
	unknownAgent, _, err := ca.SignAgent(signCSR(t), "ag-unknown", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	registerAgent(t, st, "ag-gone")
	goneAgent, _, err := ca.SignAgent(signCSR(t), "ag-gone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeregisterAgent(context.Background(), "ag-gone", t0.Add(-time.Minute), "decommissioned"); err != nil {
		t.Fatal(err)
	}
	expiredAgent := *agentCert
	expiredAgent.NotAfter = t0
	// Operator certificates.
	opCert := func(name, role string) *x509.Certificate {
		c, _, err := ca.SignOperator(signCSR(t), name, role, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	viewerCert, adminCert, rootCert := opCert("vera", "viewer"), opCert("ada", "admin"), opCert("mallory", "root")
	expiredAdmin := *adminCert
	expiredAdmin.NotAfter = t0.Add(-time.Second)
	chain := func(c *x509.Certificate) *peer.Peer { return tlsPeer([]*x509.Certificate{c, ca.Certificate()}) }
	certOperator := func(name string, r auth.Role) *auth.Principal {
		return &auth.Principal{Kind: "operator", ID: name, Role: r, Certificate: true}
	}
	a := auth.NewAuthenticator(st, func() time.Time { return t0 })
	bearer := func(s string) []string { return []string{"Bearer " + s} }

	operator := func(id string, r auth.Role) *auth.Principal {
		return &auth.Principal{Kind: "operator", ID: id, Role: r}
	}
	tests := []struct {
		name   string
		method string
		authz  []string
		peer   *peer.Peer
		code   codes.Code
		msg    []string        // substrings of the status message
		want   *auth.Principal // nil: no principal attached
	}{
		// Open methods: no credential needed, none looked at.
		{name: "health check", method: "/grpc.health.v1.Health/Check", code: codes.OK},
		{name: "health watch", method: "/grpc.health.v1.Health/Watch", code: codes.OK},
		{name: "reflection v1", method: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", code: codes.OK},
		{name: "reflection v1alpha", method: "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", code: codes.OK},
		{name: "register", method: register, code: codes.OK},
		{name: "register ignores a bad bearer token", method: register, authz: bearer("fat_nonsense"), code: codes.OK},

		// Operator methods: credentials.
		{name: "missing metadata", method: listAgents, code: codes.Unauthenticated, msg: []string{"missing credentials"}},
		{name: "metadata without authorization", method: listAgents, authz: []string{}, code: codes.Unauthenticated, msg: []string{"missing credentials"}},
		{name: "Bearer without token", method: listAgents, authz: []string{"Bearer"}, code: codes.Unauthenticated, msg: []string{"malformed"}},
		{name: "Bearer with blank token", method: listAgents, authz: []string{"Bearer    "}, code: codes.Unauthenticated, msg: []string{"malformed"}},
		{name: "other scheme", method: listAgents, authz: []string{"Basic " + tok.viewer}, code: codes.Unauthenticated, msg: []string{"malformed"}},
		{name: "token without scheme", method: listAgents, authz: []string{tok.viewer}, code: codes.Unauthenticated, msg: []string{"malformed"}},
		{name: "unknown token", method: listAgents, authz: bearer("fat_unknown"), code: codes.Unauthenticated, msg: []string{"invalid API token"}},
		{name: "expired token", method: listAgents, authz: bearer(tok.expired), code: codes.Unauthenticated, msg: []string{"invalid API token"}},
		{name: "revoked token", method: listAgents, authz: bearer(tok.revoked), code: codes.Unauthenticated, msg: []string{"invalid API token"}},
		{name: "token with unknown role", method: listAgents, authz: bearer(tok.badRole), code: codes.Internal, msg: []string{"at-badrole", "unknown role"}},
		{name: "token not yet expired", method: listAgents, authz: bearer(tok.expiresLater), code: codes.OK, want: operator("at-later", auth.RoleAdmin)},
		{name: "viewer lists", method: listAgents, authz: bearer(tok.viewer), code: codes.OK, want: operator("at-viewer", auth.RoleViewer)},
		{name: "viewer gets", method: getAgent, authz: bearer(tok.viewer), code: codes.OK, want: operator("at-viewer", auth.RoleViewer)},
		{name: "lower-case scheme and extra spaces", method: getAgent, authz: []string{"bearer   " + tok.operator + "  "}, code: codes.OK, want: operator("at-operator", auth.RoleOperator)},
		{name: "viewer cannot create join tokens", method: createJoinToken, authz: bearer(tok.viewer), code: codes.PermissionDenied,
			msg: []string{"needs role admin", "at-viewer has role viewer"}},
		{name: "operator cannot create join tokens", method: createJoinToken, authz: bearer(tok.operator), code: codes.PermissionDenied,
			msg: []string{"needs role admin", "at-operator has role operator"}},
		{name: "admin creates join tokens", method: createJoinToken, authz: bearer(tok.admin), code: codes.OK, want: operator("at-admin", auth.RoleAdmin)},
		{name: "client certificate does not replace a token", method: listAgents, peer: tlsPeer([]*x509.Certificate{agentCert, ca.Certificate()}),
			code: codes.Unauthenticated, msg: []string{"missing credentials"}},

		// Agent method: the verified client certificate.
		{name: "connect without a peer", method: connect, code: codes.Unauthenticated, msg: []string{"no TLS connection"}},
		{name: "connect with a peer without auth info", method: connect, peer: &peer.Peer{}, code: codes.Unauthenticated, msg: []string{"no TLS connection"}},
		{name: "connect without TLS", method: connect, peer: &peer.Peer{AuthInfo: otherAuth{}}, code: codes.Unauthenticated, msg: []string{"no TLS connection"}},
		{name: "connect without a verified chain", method: connect, peer: tlsPeer(), code: codes.Unauthenticated, msg: []string{"no verified client certificate"}},
		{name: "connect with an empty chain", method: connect, peer: tlsPeer([]*x509.Certificate{}), code: codes.Unauthenticated, msg: []string{"no verified client certificate"}},
		{name: "connect with a certificate without agent identity", method: connect, peer: tlsPeer([]*x509.Certificate{serverCert, ca.Certificate()}),
			code: codes.Unauthenticated, msg: []string{"no agent identity"}},
		{name: "connect with an operator token", method: connect, authz: bearer(tok.admin), code: codes.Unauthenticated},
		{name: "connect with an agent certificate and a token", method: connect, authz: bearer(tok.admin), peer: chain(agentCert),
			code: codes.Unauthenticated, msg: []string{"conflicting credentials", "only the agent's client certificate"}},
		{name: "renew with an agent certificate and a token", method: renew, authz: bearer("fat_anything"), peer: chain(agentCert),
			code: codes.Unauthenticated, msg: []string{"conflicting credentials"}},
		{name: "connect with an agent certificate", method: connect, peer: tlsPeer([]*x509.Certificate{agentCert, ca.Certificate()}),
			code: codes.OK, want: &auth.Principal{Kind: "agent", ID: "ag-7k2m9q4x"}},
		{name: "renew with an agent certificate", method: renew, peer: chain(agentCert), code: codes.OK, want: &auth.Principal{Kind: "agent", ID: "ag-7k2m9q4x"}},
		{name: "connect as an unknown agent", method: connect, peer: chain(unknownAgent), code: codes.Unauthenticated, msg: []string{"ag-unknown", "not registered"}},
		{name: "connect as a deregistered agent", method: connect, peer: chain(goneAgent), code: codes.Unauthenticated,
			msg: []string{"ag-gone", "deregistered", "decommissioned", "new join token"}},
		{name: "renew as a deregistered agent", method: renew, peer: chain(goneAgent), code: codes.Unauthenticated, msg: []string{"deregistered"}},
		{name: "connect with an expired certificate", method: connect, peer: chain(&expiredAgent), code: codes.Unauthenticated, msg: []string{"expired"}},
		{name: "connect with an operator certificate", method: connect, peer: chain(adminCert), code: codes.Unauthenticated, msg: []string{"operator identity"}},
		{name: "renew with an operator certificate", method: renew, peer: chain(adminCert), code: codes.Unauthenticated},

		// Operator certificates.
		{name: "viewer certificate lists", method: listAgents, peer: chain(viewerCert), code: codes.OK, want: certOperator("vera", auth.RoleViewer)},
		{name: "viewer certificate cannot create join tokens", method: createJoinToken, peer: chain(viewerCert), code: codes.PermissionDenied,
			msg: []string{"needs role admin", "operator certificate vera has role viewer"}},
		{name: "admin certificate creates join tokens", method: createJoinToken, peer: chain(adminCert), code: codes.OK, want: certOperator("ada", auth.RoleAdmin)},
		{name: "admin certificate creates API tokens", method: createAPIToken, peer: chain(adminCert), code: codes.OK, want: certOperator("ada", auth.RoleAdmin)},
		{name: "expired operator certificate", method: listAgents, peer: chain(&expiredAdmin), code: codes.Unauthenticated, msg: []string{"ada", "expired"}},
		{name: "operator certificate with an unknown role", method: listAgents, peer: chain(rootCert), code: codes.Unauthenticated, msg: []string{"unknown role"}},

		// Conflicting credentials: refused, not decided by their order.
		{name: "a token and an operator certificate", method: createJoinToken, authz: bearer(tok.viewer), peer: chain(adminCert),
			code: codes.Unauthenticated, msg: []string{"conflicting credentials", "bearer token", "operator ada (role admin)", "only one"}},
		{name: "an admin token and a viewer certificate", method: listAgents, authz: bearer(tok.admin), peer: chain(viewerCert),
			code: codes.Unauthenticated, msg: []string{"conflicting credentials", "operator vera (role viewer)"}},
		{name: "a bad token is not rescued by a certificate", method: listAgents, authz: bearer("fat_wrong"), peer: chain(adminCert),
			code: codes.Unauthenticated, msg: []string{"conflicting credentials"}},
		{name: "a token and an agent certificate", method: listAgents, authz: bearer(tok.admin), peer: chain(agentCert),
			code: codes.Unauthenticated, msg: []string{"conflicting credentials", "agent ag-7k2m9q4x"}},
		{name: "a token and a certificate without identity", method: listAgents, authz: bearer(tok.admin), peer: chain(serverCert),
			code: codes.Unauthenticated, msg: []string{"conflicting credentials", "without an operator identity"}},
		{name: "two authorization values, valid first", method: listAgents, authz: []string{"Bearer " + tok.admin, "Bearer " + tok.viewer},
			code: codes.Unauthenticated, msg: []string{"conflicting credentials", "2 authorization metadata values", "exactly one"}},
		{name: "two authorization values, valid last", method: listAgents, authz: []string{"Bearer fat_wrong", "Bearer " + tok.admin},
			code: codes.Unauthenticated, msg: []string{"conflicting credentials", "2 authorization metadata values"}},
		{name: "the same token twice", method: listAgents, authz: []string{"Bearer " + tok.admin, "Bearer " + tok.admin},
			code: codes.Unauthenticated, msg: []string{"conflicting credentials"}},
		{name: "a token and an expired certificate", method: listAgents, authz: bearer(tok.admin), peer: chain(&expiredAdmin),
			code: codes.Unauthenticated, msg: []string{"conflicting credentials"}},

		{name: "an agent certificate is no operator", method: listAgents, peer: chain(agentCert), code: codes.Unauthenticated,
			msg: []string{"never authenticates an operator"}},
		{name: "revoked token on an admin method", method: createAPIToken, authz: bearer(tok.revoked), code: codes.Unauthenticated},
		{name: "operator lists audit events", method: listAudit, authz: bearer(tok.operator), code: codes.OK, want: operator("at-operator", auth.RoleOperator)},
		{name: "viewer cannot list audit events", method: listAudit, authz: bearer(tok.viewer), code: codes.PermissionDenied},
		{name: "operator cannot deregister", method: flotillav1.AdminService_DeregisterAgent_FullMethodName, authz: bearer(tok.operator), code: codes.PermissionDenied},

		// Everything else is closed.
		{name: "unknown fleet method", method: "/flotilla.v1.FleetService/DeleteAgent", authz: bearer(tok.admin), code: codes.PermissionDenied,
			msg: []string{"/flotilla.v1.FleetService/DeleteAgent", "not open to any caller"}},
		{name: "unknown agent method", method: "/flotilla.v1.AgentService/Unregister", code: codes.PermissionDenied},
		{name: "unknown service", method: "/other.v1.Admin/Do", authz: bearer(tok.admin), code: codes.PermissionDenied},
		{name: "service without method", method: "/grpc.health.v1.Health", code: codes.PermissionDenied},
		{name: "open prefix smuggled into a path", method: "/grpc.health.v1.Health/../flotilla.v1.FleetService/CreateJoinToken", code: codes.PermissionDenied},
		{name: "below an open method", method: register + "/x", code: codes.PermissionDenied},
		{name: "no method in the context", method: "", authz: bearer(tok.admin), code: codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := callCtx(tt.method, tt.authz, tt.peer)
			ctx, err := authenticate(a, in)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("AuthFunc code = %s (%v), want %s", got, err, tt.code)
			}
			if err != nil {
				for _, m := range tt.msg {
					if !strings.Contains(status.Convert(err).Message(), m) {
						t.Errorf("message %q does not contain %q", status.Convert(err).Message(), m)
					}
				}
				if ctx != nil {
					t.Errorf("AuthFunc returned a context with an error")
				}
				return
			}
			if ctx == nil {
				t.Fatal("AuthFunc returned a nil context")
			}
			p, ok := auth.PrincipalFrom(ctx)
			switch {
			case tt.want == nil && ok:
				t.Errorf("principal %+v attached to an open method", p)
			case tt.want != nil && !ok:
				t.Errorf("no principal attached, want %+v", *tt.want)
			case tt.want != nil && p != *tt.want:
				t.Errorf("principal = %+v, want %+v", p, *tt.want)
			}
			// The returned context still carries the incoming one.
			if m, _ := grpc.Method(ctx); m != tt.method {
				t.Errorf("returned context lost the method: %q", m)
			}
		})
	}
}

func TestAuthFuncStoreUnavailable(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	tok := seedTokens(t, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	a := auth.NewAuthenticator(st, func() time.Time { return t0 })
	_, err = authenticate(a, callCtx(listAgents, []string{"Bearer " + tok.admin}, nil))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("AuthFunc with the store down = %v, want Unavailable", err)
	}
}

func TestAuthenticatorDefaultClock(t *testing.T) {
	st := openStore(t)
	secret, hash, err := auth.NewSecret(auth.APITokenPrefix)
	if err != nil {
		t.Fatal(err)
	}
	// Expired a minute ago by the wall clock, which a nil clock must use.
	if err := st.CreateAPIToken(context.Background(), store.APIToken{ID: "at-1", Hash: hash, Role: "admin",
		CreatedAt: time.Now().Add(-time.Hour), ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	_, err = authenticate(auth.NewAuthenticator(st, nil), callCtx(listAgents, []string{"Bearer " + secret}, nil))
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("AuthFunc = %v, want Unauthenticated for a token expired by the wall clock", err)
	}
}

func TestAgentIDFromPeer(t *testing.T) {
	_, agentCert, _ := testCA(t)
	id, err := auth.AgentIDFromPeer(peer.NewContext(context.Background(), tlsPeer([]*x509.Certificate{agentCert})))
	if err != nil || id != "ag-7k2m9q4x" {
		t.Errorf("AgentIDFromPeer = %q, %v; want ag-7k2m9q4x", id, err)
	}
	// Only the first (leaf) certificate of the first chain counts.
	other := &x509.Certificate{URIs: []*url.URL{pki.AgentURI("ag-other")}}
	id, err = auth.AgentIDFromPeer(peer.NewContext(context.Background(), tlsPeer([]*x509.Certificate{agentCert}, []*x509.Certificate{other})))
	if err != nil || id != "ag-7k2m9q4x" {
		t.Errorf("AgentIDFromPeer with two chains = %q, %v; want the first chain's ag-7k2m9q4x", id, err)
	}
}

func TestWithPrincipal(t *testing.T) {
	if _, ok := auth.PrincipalFrom(context.Background()); ok {
		t.Error("PrincipalFrom(empty context) reported a principal")
	}
	want := auth.Principal{Kind: "operator", ID: "at-1", Role: auth.RoleOperator}
	got, ok := auth.PrincipalFrom(auth.WithPrincipal(context.Background(), want))
	if !ok || got != want {
		t.Errorf("PrincipalFrom(WithPrincipal(p)) = %+v, %v; want %+v", got, ok, want)
	}
}

// With the live registry, agents it holds are admitted without a store read
// (the store here does not even know them), and agents it does not hold are
// still looked up, so a deregistered agent is told why it is refused.
func TestAgentsFromTheRegistry(t *testing.T) {
	st := openStore(t)
	ca, agentCert, _ := testCA(t)
	registerAgent(t, st, "ag-gone")
	goneAgent, _, err := ca.SignAgent(signCSR(t), "ag-gone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeregisterAgent(context.Background(), "ag-gone", t0.Add(-time.Minute), "decommissioned"); err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{"ag-7k2m9q4x": true}
	a := auth.NewAuthenticator(st, func() time.Time { return t0 }).WithRegisteredAgents(func(id string) bool { return live[id] })
	chain := func(c *x509.Certificate) *peer.Peer { return tlsPeer([]*x509.Certificate{c, ca.Certificate()}) }

	ctx, err := authenticate(a, callCtx(connect, nil, chain(agentCert)))
	if err != nil {
		t.Fatalf("agent held by the registry: %v", err)
	}
	if p, _ := auth.PrincipalFrom(ctx); p.Kind != "agent" || p.ID != "ag-7k2m9q4x" {
		t.Errorf("principal = %+v, want agent ag-7k2m9q4x", p)
	}
	_, err = authenticate(a, callCtx(connect, nil, chain(goneAgent)))
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "deregistered") {
		t.Errorf("deregistered agent the registry no longer holds: %v, want Unauthenticated naming the deregistration", err)
	}
}

// authenticate is AuthFunc as callers see it: its error becomes the gRPC
// status the server answers with (api.GRPCError, as the server wires it).
func authenticate(a *auth.Authenticator, ctx context.Context) (context.Context, error) {
	ctx, err := a.AuthFunc(ctx)
	return ctx, api.GRPCError(err)
}
