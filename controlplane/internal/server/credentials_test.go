package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/pki"
	"flotilla.dev/controlplane/internal/server/servertest"
)

func TestAPITokenLifecycle(t *testing.T) {
	h := start(t)
	admin := h.adminClient()
	ctx := h.operatorCtx(h.admin)

	created, err := admin.CreateAPIToken(ctx, &flotillav1.CreateAPITokenRequest{Name: "ci-deployer", Role: flotillav1.Role_ROLE_OPERATOR,
		Ttl: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatalf("CreateAPIToken: %v", err)
	}
	secret, tok := created.GetSecret(), created.GetToken()
	if !strings.HasPrefix(secret, auth.APITokenPrefix) || tok.GetName() != "ci-deployer" || tok.GetRole() != flotillav1.Role_ROLE_OPERATOR ||
		tok.GetExpiresAt() == nil || !strings.HasPrefix(tok.GetCreatedBy(), "token:at-") {
		t.Fatalf("CreateAPIToken = %v", created)
	}
	// Only the hash is stored.
	stored, err := h.cp.Store().GetAPIToken(context.Background(), tok.GetId())
	if err != nil || string(stored.Hash) != string(auth.HashSecret(secret)) {
		t.Fatalf("stored token = %+v, %v", stored, err)
	}

	// The token works with its role and no more.
	fc := h.fleet()
	if _, err := fc.ListAgents(h.operatorCtx(secret), &flotillav1.ListAgentsRequest{}); err != nil {
		t.Fatalf("ListAgents with the new token: %v", err)
	}
	if _, err := fc.CreateJoinToken(h.operatorCtx(secret), &flotillav1.CreateJoinTokenRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("operator CreateJoinToken = %v, want PermissionDenied", err)
	}

	list, err := admin.ListAPITokens(ctx, &flotillav1.ListAPITokensRequest{})
	if err != nil || len(list.GetTokens()) != 2 {
		t.Fatalf("ListAPITokens = %v, %v; want the bootstrap token and the new one", list, err)
	}
	if strings.Contains(list.String(), secret) {
		t.Fatal("ListAPITokens shows a secret")
	}
	var bootstrap string
	for _, tk := range list.GetTokens() {
		if tk.GetName() == "bootstrap admin" {
			bootstrap = tk.GetId()
		}
	}

	// Revocation takes effect at once.
	rev, err := admin.RevokeAPIToken(ctx, &flotillav1.RevokeAPITokenRequest{TokenId: tok.GetId()})
	if err != nil || rev.GetToken().GetRevokedAt() == nil {
		t.Fatalf("RevokeAPIToken = %v, %v", rev, err)
	}
	if _, err := fc.ListAgents(h.operatorCtx(secret), &flotillav1.ListAgentsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked token = %v, want Unauthenticated", err)
	}
	active, _ := admin.ListAPITokens(ctx, &flotillav1.ListAPITokensRequest{})
	all, _ := admin.ListAPITokens(ctx, &flotillav1.ListAPITokensRequest{IncludeInactive: true})
	if len(active.GetTokens()) != 1 || len(all.GetTokens()) != 2 {
		t.Fatalf("active %d, all %d tokens; want 1 and 2", len(active.GetTokens()), len(all.GetTokens()))
	}

	// Expiry.
	short, err := admin.CreateAPIToken(ctx, &flotillav1.CreateAPITokenRequest{Name: "short", Role: flotillav1.Role_ROLE_VIEWER, Ttl: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "the short token to expire", func() bool {
		_, err := fc.ListAgents(h.operatorCtx(short.GetSecret()), &flotillav1.ListAgentsRequest{})
		return status.Code(err) == codes.Unauthenticated
	})

	// The last admin token cannot be revoked; with a second one it can.
	if _, err := admin.RevokeAPIToken(ctx, &flotillav1.RevokeAPITokenRequest{TokenId: bootstrap}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("revoking the last admin token = %v, want FailedPrecondition", err)
	}
	second, err := admin.CreateAPIToken(ctx, &flotillav1.CreateAPITokenRequest{Name: "admin-2", Role: flotillav1.Role_ROLE_ADMIN})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.adminClient().RevokeAPIToken(h.operatorCtx(second.GetSecret()), &flotillav1.RevokeAPITokenRequest{TokenId: bootstrap}); err != nil {
		t.Fatalf("revoking the bootstrap token with another admin token: %v", err)
	}
	if _, err := fc.ListAgents(ctx, &flotillav1.ListAgentsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked bootstrap token = %v, want Unauthenticated", err)
	}

	bad := []struct {
		name  string
		req   *flotillav1.CreateAPITokenRequest
		field string
	}{
		{"no name", &flotillav1.CreateAPITokenRequest{Role: flotillav1.Role_ROLE_VIEWER}, "name"},
		{"bad name", &flotillav1.CreateAPITokenRequest{Name: "ci deployer", Role: flotillav1.Role_ROLE_VIEWER}, "name"},
		{"long name", &flotillav1.CreateAPITokenRequest{Name: strings.Repeat("a", 65), Role: flotillav1.Role_ROLE_VIEWER}, "name"},
		{"no role", &flotillav1.CreateAPITokenRequest{Name: "x"}, "role"},
		{"unknown role", &flotillav1.CreateAPITokenRequest{Name: "x", Role: 9}, "role"},
		{"ttl too long", &flotillav1.CreateAPITokenRequest{Name: "x", Role: flotillav1.Role_ROLE_VIEWER, Ttl: durationpb.New(2 * 365 * 24 * time.Hour)}, "ttl"},
		{"negative ttl", &flotillav1.CreateAPITokenRequest{Name: "x", Role: flotillav1.Role_ROLE_VIEWER, Ttl: durationpb.New(-time.Hour)}, "ttl"},
	}
	actx := h.operatorCtx(second.GetSecret())
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := admin.CreateAPIToken(actx, tt.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want InvalidArgument naming %s", err, tt.field)
			}
		})
	}
	if _, err := admin.RevokeAPIToken(actx, &flotillav1.RevokeAPITokenRequest{TokenId: "at-nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("RevokeAPIToken(unknown) = %v, want NotFound", err)
	}
}

func TestOperatorCertificates(t *testing.T) {
	h := start(t)
	agent, _, err := h.register(h.joinToken(&flotillav1.CreateJoinTokenRequest{}), "web-1", nil)
	if err != nil {
		t.Fatal(err)
	}

	viewer := h.operatorCert("vera@ops", flotillav1.Role_ROLE_VIEWER)
	if id := viewer.Leaf.URIs; len(id) != 2 || id[0].String() != "spiffe://flotilla/operator/vera@ops" || id[1].String() != "spiffe://flotilla/role/viewer" {
		t.Fatalf("URIs = %v", id)
	}
	if life := time.Until(viewer.Leaf.NotAfter); life > 24*time.Hour || life < 23*time.Hour {
		t.Fatalf("default lifetime %s, want 24h", life)
	}
	vconn := h.dial(h.withCert(viewer))
	if _, err := flotillav1.NewFleetServiceClient(vconn).ListAgents(context.Background(), &flotillav1.ListAgentsRequest{}); err != nil {
		t.Fatalf("ListAgents with a viewer certificate: %v", err)
	}
	_, err = flotillav1.NewFleetServiceClient(vconn).CreateJoinToken(context.Background(), &flotillav1.CreateJoinTokenRequest{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "operator certificate vera@ops has role viewer") {
		t.Fatalf("viewer certificate CreateJoinToken = %v", err)
	}
	// An operator certificate never opens an agent stream.
	if _, err := h.openStream(viewer, ""); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Connect with an operator certificate = %v, want Unauthenticated", err)
	}
	// An agent certificate never reaches an operator method.
	_, err = flotillav1.NewFleetServiceClient(h.dial(h.withCert(agent.cert))).ListAgents(context.Background(), &flotillav1.ListAgentsRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ListAgents with an agent certificate = %v, want Unauthenticated", err)
	}

	// An admin certificate creates tokens in its own name.
	admin := h.operatorCert("ada", flotillav1.Role_ROLE_ADMIN)
	created, err := flotillav1.NewAdminServiceClient(h.dial(h.withCert(admin))).CreateAPIToken(context.Background(),
		&flotillav1.CreateAPITokenRequest{Name: "from-cert", Role: flotillav1.Role_ROLE_VIEWER})
	if err != nil || created.GetToken().GetCreatedBy() != "operator-cert:ada" {
		t.Fatalf("CreateAPIToken with an admin certificate = %v, %v", created, err)
	}

	key := newCSR(t, agent.key)
	bad := []struct {
		name  string
		req   *flotillav1.IssueOperatorCertificateRequest
		field string
	}{
		{"no name", &flotillav1.IssueOperatorCertificateRequest{Role: flotillav1.Role_ROLE_ADMIN, Csr: key}, "name"},
		{"slash in name", &flotillav1.IssueOperatorCertificateRequest{Name: "a/b", Role: flotillav1.Role_ROLE_ADMIN, Csr: key}, "name"},
		{"no role", &flotillav1.IssueOperatorCertificateRequest{Name: "a", Csr: key}, "role"},
		{"no csr", &flotillav1.IssueOperatorCertificateRequest{Name: "a", Role: flotillav1.Role_ROLE_ADMIN}, "csr"},
		{"bad csr", &flotillav1.IssueOperatorCertificateRequest{Name: "a", Role: flotillav1.Role_ROLE_ADMIN, Csr: []byte("nope")}, "csr"},
		{"ttl too long", &flotillav1.IssueOperatorCertificateRequest{Name: "a", Role: flotillav1.Role_ROLE_ADMIN, Csr: key, Ttl: durationpb.New(31 * 24 * time.Hour)}, "ttl"},
		{"ttl too short", &flotillav1.IssueOperatorCertificateRequest{Name: "a", Role: flotillav1.Role_ROLE_ADMIN, Csr: key, Ttl: durationpb.New(time.Second)}, "ttl"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.adminClient().IssueOperatorCertificate(h.operatorCtx(h.admin), tt.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want InvalidArgument naming %s", err, tt.field)
			}
		})
	}
}

func TestJoinTokenRevocationAndListing(t *testing.T) {
	h := start(t)
	admin, ctx := h.adminClient(), h.operatorCtx(h.admin)
	fc := h.fleet()
	created, err := fc.CreateJoinToken(ctx, &flotillav1.CreateJoinTokenRequest{MaxUses: 5, Description: "web fleet"})
	if err != nil {
		t.Fatal(err)
	}
	usedUp := h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 1})
	if _, _, err := h.register(usedUp, "web-0", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.CreateJoinToken(ctx, &flotillav1.CreateJoinTokenRequest{Ttl: durationpb.New(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the short one expires

	if _, _, err := h.register(created.GetToken(), "web-1", nil); err != nil {
		t.Fatalf("Register: %v", err)
	}
	list, err := admin.ListJoinTokens(ctx, &flotillav1.ListJoinTokensRequest{})
	if err != nil || len(list.GetTokens()) != 1 || list.GetTokens()[0].GetId() != created.GetTokenId() || list.GetTokens()[0].GetUses() != 1 ||
		list.GetTokens()[0].GetDescription() != "web fleet" {
		t.Fatalf("active join tokens = %v, %v; want only the 5-use one, used once", list, err)
	}
	if strings.Contains(list.String(), created.GetToken()) {
		t.Fatal("ListJoinTokens shows a secret")
	}

	rev, err := admin.RevokeJoinToken(ctx, &flotillav1.RevokeJoinTokenRequest{TokenId: created.GetTokenId()})
	if err != nil || rev.GetToken().GetRevokedAt() == nil {
		t.Fatalf("RevokeJoinToken = %v, %v", rev, err)
	}
	// A revoked token answers exactly like a wrong one.
	_, _, errRevoked := h.register(created.GetToken(), "web-2", nil)
	_, _, errWrong := h.register("fjt_"+strings.Repeat("a", 52), "web-2", nil)
	if status.Code(errRevoked) != codes.Unauthenticated || status.Convert(errRevoked).Message() != status.Convert(errWrong).Message() {
		t.Fatalf("revoked token: %v; wrong token: %v; want the same Unauthenticated answer", errRevoked, errWrong)
	}
	list, _ = admin.ListJoinTokens(ctx, &flotillav1.ListJoinTokensRequest{})
	all, _ := admin.ListJoinTokens(ctx, &flotillav1.ListJoinTokensRequest{IncludeInactive: true})
	if len(list.GetTokens()) != 0 || len(all.GetTokens()) != 3 {
		t.Fatalf("after revocation: %d active, %d in all; want 0 and 3 (revoked, used up, expired)", len(list.GetTokens()), len(all.GetTokens()))
	}
	if _, err := admin.RevokeJoinToken(ctx, &flotillav1.RevokeJoinTokenRequest{TokenId: "jt-nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("RevokeJoinToken(unknown) = %v, want NotFound", err)
	}
	if _, err := admin.RevokeJoinToken(ctx, &flotillav1.RevokeJoinTokenRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("RevokeJoinToken() = %v, want InvalidArgument", err)
	}
}

func TestRegistrationRateLimit(t *testing.T) {
	h := start(t, servertest.WithConfig(func(c *config.Config) {
		c.RegistrationRateLimit = config.RateLimit{PerMinute: 1, Burst: 3}
	}))
	token := h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 10})
	if _, _, err := h.register(token, "web-1", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.register("fjt_wrong", "web-2", nil); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong token = %v", err)
	}
	if _, _, err := h.register(token, "web-3", nil); err != nil {
		t.Fatal(err)
	}
	// The burst is spent: right and wrong tokens alike are refused, and the
	// answer says nothing about the token.
	for _, tok := range []string{token, "fjt_wrong"} {
		_, _, err := h.register(tok, "web-4", nil)
		st := status.Convert(err)
		if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "retry in") || strings.Contains(st.Message(), "token") {
			t.Fatalf("over the limit: %v, want ResourceExhausted with a retry hint", err)
		}
		var retry *errdetails.RetryInfo
		for _, d := range st.Details() {
			if r, ok := d.(*errdetails.RetryInfo); ok {
				retry = r
			}
		}
		if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 || retry.GetRetryDelay().AsDuration() > time.Minute {
			t.Fatalf("RetryInfo = %v", retry)
		}
	}
	if !strings.Contains(h.scrape(), `flotilla_agent_registrations_total{result="limited"} 2`) {
		t.Error("/metrics does not count the refused registrations")
	}
	// Operator calls are not limited by it.
	if _, err := h.fleet().ListAgents(h.operatorCtx(h.admin), &flotillav1.ListAgentsRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestCertificateRenewalKeepsTheStream(t *testing.T) {
	h := start(t)
	agent, _, err := h.register(h.joinToken(&flotillav1.CreateJoinTokenRequest{}), "web-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Until(agent.cert.Leaf.NotAfter); got < 6*24*time.Hour || got > 7*24*time.Hour {
		t.Fatalf("a new agent's certificate lives %s, want 7 days", got)
	}
	stream, err := h.openStream(agent.cert, agent.id)
	if err != nil {
		t.Fatal(err)
	}

	renewed, err := h.renew(agent)
	if err != nil {
		t.Fatalf("RenewCertificate: %v", err)
	}
	if id, err := pki.AgentIDFromCertificate(renewed.Leaf); err != nil || id != agent.id {
		t.Fatalf("renewed certificate identity = %q, %v; want %s", id, err, agent.id)
	}
	if renewed.Leaf.SerialNumber.Cmp(agent.cert.Leaf.SerialNumber) == 0 || !renewed.Leaf.NotAfter.After(agent.cert.Leaf.NotAfter.Add(-time.Second)) {
		t.Fatalf("renewed certificate: serial %v, not after %s", renewed.Leaf.SerialNumber, renewed.Leaf.NotAfter)
	}
	rec, err := h.cp.Store().GetAgent(context.Background(), agent.id)
	if err != nil || rec.CertSerial != pki.SerialHex(renewed.Leaf) || !rec.CertNotAfter.Equal(renewed.Leaf.NotAfter) {
		t.Fatalf("stored agent = serial %q not after %s, %v; want the renewed certificate", rec.CertSerial, rec.CertNotAfter, err)
	}
	got, err := h.fleet().GetAgent(h.operatorCtx(h.admin), &flotillav1.GetAgentRequest{AgentId: agent.id})
	if err != nil || !got.GetAgent().GetCertificateExpiresAt().AsTime().Equal(renewed.Leaf.NotAfter) {
		t.Fatalf("GetAgent certificate_expires_at = %v, %v", got.GetAgent().GetCertificateExpiresAt(), err)
	}

	// The stream opened with the old certificate carries on.
	if err := stream.Send(heartbeat(42, true)); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, "the heartbeat after the renewal", func() bool {
		r, err := h.fleet().GetAgent(h.operatorCtx(h.admin), &flotillav1.GetAgentRequest{AgentId: agent.id})
		return err == nil && r.GetAgent().GetLastHeartbeat().GetHost().GetCpuPercent() == 42 &&
			r.GetAgent().GetState() == flotillav1.AgentState_AGENT_STATE_CONNECTED
	})

	// The new certificate opens a new stream, which replaces the old one
	// (proving the old one was open until then).
	if _, err := h.openStream(renewed, agent.id); err != nil {
		t.Fatalf("Connect with the renewed certificate: %v", err)
	}
	if err := recvErr(t, stream); status.Code(err) != codes.Aborted {
		t.Fatalf("old stream ended with %v, want Aborted (replaced)", err)
	}
	// And renews in turn.
	next := &testAgent{key: agent.key, id: agent.id, cert: renewed}
	if _, err := h.renew(next); err != nil {
		t.Fatalf("renewing with the renewed certificate: %v", err)
	}

	// A bad CSR is refused and changes nothing.
	_, err = flotillav1.NewAgentServiceClient(h.dial(h.withCert(renewed))).RenewCertificate(context.Background(), &flotillav1.RenewCertificateRequest{Csr: []byte("nope")})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "csr") {
		t.Fatalf("bad CSR = %v", err)
	}
	// Without a certificate there is nothing to renew.
	_, err = flotillav1.NewAgentServiceClient(h.dial(h.serverTLS())).RenewCertificate(h.operatorCtx(h.admin), &flotillav1.RenewCertificateRequest{Csr: newCSR(t, agent.key)})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("RenewCertificate with an admin token = %v, want Unauthenticated", err)
	}
}

func TestDeregistration(t *testing.T) {
	dir := t.TempDir()
	h := start(t, servertest.WithDataDir(dir))
	token := h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 2})
	gone, _, err := h.register(token, "web-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	kept, _, err := h.register(token, "web-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := h.openStream(gone.cert, gone.id)
	if err != nil {
		t.Fatal(err)
	}

	// Only admins deregister.
	if _, err := h.adminClient().DeregisterAgent(h.operatorCtx(h.apiToken("operator")), &flotillav1.DeregisterAgentRequest{AgentId: gone.id}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("operator DeregisterAgent = %v, want PermissionDenied", err)
	}
	if _, err := h.adminClient().DeregisterAgent(h.operatorCtx(h.admin), &flotillav1.DeregisterAgentRequest{AgentId: gone.id, Reason: "host decommissioned"}); err != nil {
		t.Fatalf("DeregisterAgent: %v", err)
	}
	// The open stream is closed at once, with a message that says why.
	err = recvErr(t, stream)
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "deregistered") || !strings.Contains(err.Error(), "host decommissioned") {
		t.Fatalf("stream ended with %v, want Unauthenticated naming the deregistration", err)
	}
	refused := func(h *harness, what string) {
		t.Helper()
		if _, err := h.openStream(gone.cert, gone.id); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "deregistered") {
			t.Fatalf("%s: Connect = %v, want Unauthenticated (deregistered)", what, err)
		}
		if _, err := h.renew(gone); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "deregistered") {
			t.Fatalf("%s: RenewCertificate = %v, want Unauthenticated (deregistered)", what, err)
		}
		if _, err := h.fleet().GetAgent(h.operatorCtx(h.admin), &flotillav1.GetAgentRequest{AgentId: gone.id}); status.Code(err) != codes.NotFound {
			t.Fatalf("%s: GetAgent = %v, want NotFound", what, err)
		}
		list, err := h.fleet().ListAgents(h.operatorCtx(h.admin), &flotillav1.ListAgentsRequest{})
		if err != nil || len(list.GetAgents()) != 1 || list.GetAgents()[0].GetId() != kept.id {
			t.Fatalf("%s: ListAgents = %v, %v; want only %s", what, list, err, kept.id)
		}
		if _, err := h.openStream(kept.cert, kept.id); err != nil {
			t.Fatalf("%s: the other agent cannot connect: %v", what, err)
		}
	}
	refused(h, "after deregistration")

	// Again: nothing changes; unknown: NotFound.
	if _, err := h.adminClient().DeregisterAgent(h.operatorCtx(h.admin), &flotillav1.DeregisterAgentRequest{AgentId: gone.id}); err != nil {
		t.Fatalf("second DeregisterAgent: %v", err)
	}
	if _, err := h.adminClient().DeregisterAgent(h.operatorCtx(h.admin), &flotillav1.DeregisterAgentRequest{AgentId: "nope-123456"}); status.Code(err) != codes.NotFound {
		t.Fatalf("DeregisterAgent(unknown) = %v, want NotFound", err)
	}
	rec, err := h.cp.Store().GetAgent(context.Background(), gone.id)
	if err != nil || rec.DeregisterReason != "host decommissioned" {
		t.Fatalf("stored agent = %+v, %v; want the first reason kept", rec, err)
	}

	// A new control plane on the same data directory refuses it too.
	refused(h.restart(), "after a restart")
}

func TestImpersonationIsRefused(t *testing.T) {
	h := start(t)
	token := h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 2})
	a, _, err := h.register(token, "web-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := h.register(token, "web-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	// A hello that claims the other agent's ID.
	if _, err := h.openStream(a.cert, b.id); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("hello claiming %s with %s's certificate = %v, want PermissionDenied", b.id, a.id, err)
	}
	// Renewal signs for the certificate's identity only: a's renewal is a's.
	renewed, err := h.renew(a)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := pki.AgentIDFromCertificate(renewed.Leaf); id != a.id {
		t.Fatalf("renewal issued for %q", id)
	}
	if h.agentState(b.id) == flotillav1.AgentState_AGENT_STATE_CONNECTED {
		t.Fatal("the impersonated agent shows as connected")
	}
	// Events for another agent's command: TestCommandEventFromAnotherAgentIgnored.
}

// An agent whose Register answer was lost retries with the same key: it
// gets the agent its first attempt created (a new certificate for it), not
// a second agent, and the join token is used once.
func TestRegisterRetriedWithTheSameKey(t *testing.T) {
	h := start(t)
	// A token with uses left: the store refuses a second agent with the
	// key, and the retry gets the first.
	spare := h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 2})
	spareKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	spareReq := &flotillav1.RegisterRequest{JoinToken: spare, Csr: newCSR(t, spareKey), Hostname: "db-1"}
	spareClient := flotillav1.NewAgentServiceClient(h.dial(h.serverTLS()))
	a, errA := spareClient.Register(context.Background(), spareReq)
	b, errB := spareClient.Register(context.Background(), spareReq)
	if errA != nil || errB != nil || a.GetAgentId() != b.GetAgentId() {
		t.Fatalf("Register twice with the same key on a 2-use token = %v (%v), %v (%v); want the same agent",
			a.GetAgentId(), errA, b.GetAgentId(), errB)
	}
	list, err := h.adminClient().ListJoinTokens(h.operatorCtx(h.admin), &flotillav1.ListJoinTokensRequest{})
	if err != nil || len(list.GetTokens()) != 1 || list.GetTokens()[0].GetUses() != 1 {
		t.Fatalf("join tokens after the retry = %v, %v; want the 2-use token used once", list, err)
	}

	// A token the first attempt used up.
	token := h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 1})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	req := &flotillav1.RegisterRequest{JoinToken: token, Csr: newCSR(t, key), Hostname: "web-1"}
	client := flotillav1.NewAgentServiceClient(h.dial(h.serverTLS()))
	first, err := client.Register(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := client.Register(context.Background(), req)
	if err != nil {
		t.Fatalf("Register retried with the same key on a used-up token: %v", err)
	}
	if again.GetAgentId() != first.GetAgentId() || bytes.Equal(again.GetCertificatePem(), first.GetCertificatePem()) {
		t.Fatalf("retry answered agent %s (new certificate: %v), want %s with a new certificate",
			again.GetAgentId(), !bytes.Equal(again.GetCertificatePem(), first.GetCertificatePem()), first.GetAgentId())
	}
	// The certificate of the retry is the one the agent keeps: it connects.
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	pair, err := tls.X509KeyPair(again.GetCertificatePem(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := h.connect(&testAgent{key: key, id: again.GetAgentId(), cert: pair})
	if err := stream.Send(hello(again.GetAgentId(), nil)); err != nil {
		t.Fatal(err)
	}
	if msg, err := stream.Recv(); err != nil || msg.GetWelcome().GetAgentId() != first.GetAgentId() {
		t.Fatalf("stream with the retry's certificate: %v, %v", msg, err)
	}
	agents, err := h.fleet().ListAgents(h.operatorCtx(h.admin), &flotillav1.ListAgentsRequest{})
	if err != nil || len(agents.GetAgents()) != 2 {
		t.Fatalf("ListAgents = %v, %v; want the two agents, one per key", agents, err)
	}
	// Another key is another agent: the token has no use left for it.
	if _, _, err := h.register(token, "web-2", nil); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Register with another key on the used-up token = %v, want Unauthenticated", err)
	}
}
