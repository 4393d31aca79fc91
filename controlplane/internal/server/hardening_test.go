package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/server"
	"flotilla.dev/controlplane/internal/server/servertest"
	"flotilla.dev/controlplane/internal/store"
)

func TestAuditTrail(t *testing.T) {
	h := start(t)
	admin, fc := h.adminClient(), h.fleet()
	viewer, operator := h.apiToken("viewer"), h.apiToken("operator")
	joinResp, err := fc.CreateJoinToken(h.operatorCtx(h.admin), &flotillav1.CreateJoinTokenRequest{Description: "audited"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fc.CreateJoinToken(h.operatorCtx(viewer), &flotillav1.CreateJoinTokenRequest{Description: "denied"}); status.Code(err) != codes.PermissionDenied {
		t.Fatal(err)
	}
	if _, err := fc.CreateJoinToken(context.Background(), &flotillav1.CreateJoinTokenRequest{Description: "anonymous"}); status.Code(err) != codes.Unauthenticated {
		t.Fatal(err)
	}
	agent, _, err := h.register(joinResp.GetToken(), "web-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.renew(agent); err != nil {
		t.Fatal(err)
	}
	// Reads are not audited.
	if _, err := fc.ListAgents(h.operatorCtx(h.admin), &flotillav1.ListAgentsRequest{}); err != nil {
		t.Fatal(err)
	}

	list := func(req *flotillav1.ListAuditEventsRequest) []*flotillav1.AuditEvent {
		t.Helper()
		resp, err := admin.ListAuditEvents(h.operatorCtx(operator), req)
		if err != nil {
			t.Fatalf("ListAuditEvents(%v): %v", req, err)
		}
		return resp.GetEvents()
	}
	all := list(&flotillav1.ListAuditEventsRequest{})
	// The harness's own CreateJoinToken is not among them (it used another
	// token); these are the five calls above, newest first.
	if len(all) != 5 {
		t.Fatalf("%d audit events, want 5: %v", len(all), all)
	}
	renew, register, anon, denied, ok := all[0], all[1], all[2], all[3], all[4]
	adminID := strings.TrimPrefix(ok.GetPrincipal(), "token:")
	if ok.GetMethod() != flotillav1.FleetService_CreateJoinToken_FullMethodName || ok.GetCode() != "OK" || ok.GetRole() != flotillav1.Role_ROLE_ADMIN ||
		!strings.HasPrefix(adminID, "at-") || ok.GetPeer() == "" || ok.GetAt() == nil || ok.GetDuration().AsDuration() <= 0 ||
		!strings.Contains(ok.GetRequest(), `"description":"audited"`) {
		t.Errorf("allowed call: %v", ok)
	}
	if denied.GetPrincipal() != "token:at-viewer" || denied.GetRole() != flotillav1.Role_ROLE_VIEWER || denied.GetCode() != "PermissionDenied" ||
		!strings.Contains(denied.GetMessage(), "needs role admin") {
		t.Errorf("denied call: %v", denied)
	}
	if anon.GetPrincipal() != "anonymous" || anon.GetCode() != "Unauthenticated" {
		t.Errorf("anonymous call: %v", anon)
	}
	if register.GetMethod() != flotillav1.AgentService_Register_FullMethodName || register.GetPrincipal() != "anonymous" || register.GetCode() != "OK" ||
		!strings.Contains(register.GetRequest(), `"join_token":"[REDACTED]"`) || !strings.Contains(register.GetRequest(), `"csr":"[elided:`) ||
		strings.Contains(register.GetRequest(), joinResp.GetToken()) {
		t.Errorf("register: %v", register)
	}
	if renew.GetMethod() != flotillav1.AgentService_RenewCertificate_FullMethodName || renew.GetPrincipal() != "agent:"+agent.id ||
		renew.GetRole() != flotillav1.Role_ROLE_UNSPECIFIED || renew.GetCode() != "OK" {
		t.Errorf("renew: %v", renew)
	}

	ids := func(evs []*flotillav1.AuditEvent) []int64 {
		var out []int64
		for _, e := range evs {
			out = append(out, e.GetId())
		}
		return out
	}
	filters := []struct {
		name string
		req  *flotillav1.ListAuditEventsRequest
		want []int64
	}{
		{"principal", &flotillav1.ListAuditEventsRequest{Principal: "token:at-viewer"}, ids(all[3:4])},
		{"method", &flotillav1.ListAuditEventsRequest{Method: flotillav1.AgentService_Register_FullMethodName}, ids(all[1:2])},
		{"failed only", &flotillav1.ListAuditEventsRequest{FailedOnly: true}, ids(all[2:4])},
		{"since", &flotillav1.ListAuditEventsRequest{Since: register.GetAt()}, ids(all[0:2])},
		{"since the future", &flotillav1.ListAuditEventsRequest{Since: timestamppb.New(time.Now().Add(time.Hour))}, nil},
	}
	for _, tt := range filters {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids(list(tt.req)); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("ids = %v, want %v", got, tt.want)
			}
		})
	}
	// Paging, newest first.
	var paged []int64
	tok := ""
	for range 10 {
		resp, err := admin.ListAuditEvents(h.operatorCtx(operator), &flotillav1.ListAuditEventsRequest{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, ids(resp.GetEvents())...)
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if fmt.Sprint(paged) != fmt.Sprint(ids(all)) {
		t.Fatalf("paged ids = %v, want %v", paged, ids(all))
	}
	for _, bad := range []*flotillav1.ListAuditEventsRequest{{PageSize: -1}, {PageSize: 5000}, {PageToken: "!!"}, {Method: "CreateAPIToken"}} {
		if _, err := admin.ListAuditEvents(h.operatorCtx(operator), bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ListAuditEvents(%v) = %v, want InvalidArgument", bad, err)
		}
	}
	if _, err := admin.ListAuditEvents(h.operatorCtx(viewer), &flotillav1.ListAuditEventsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("viewer ListAuditEvents = %v, want PermissionDenied", err)
	}
}

// flakyAuditStore fails audit writes while fail is set.
type flakyAuditStore struct {
	store.Store
	fail atomic.Bool
}

var errAuditDown = errors.New("audit disk full")

func (f *flakyAuditStore) AppendAuditEvent(ctx context.Context, e store.AuditEvent) (int64, error) {
	if f.fail.Load() {
		return 0, errAuditDown
	}
	return f.Store.AppendAuditEvent(ctx, e)
}

func (f *flakyAuditStore) FinishAuditEvent(ctx context.Context, id int64, code, msg string, d time.Duration) error {
	if f.fail.Load() {
		return errAuditDown
	}
	return f.Store.FinishAuditEvent(ctx, id, code, msg, d)
}

func TestAuditFailsClosed(t *testing.T) {
	flaky := &flakyAuditStore{}
	h := start(t, servertest.WithServerOptions(server.WithStoreWrapper(func(st store.Store) store.Store {
		flaky.Store = st
		return flaky
	})))
	token := h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 5})
	admin, fc, ctx := h.adminClient(), h.fleet(), h.operatorCtx(h.admin)
	tokensBefore, err := admin.ListJoinTokens(ctx, &flotillav1.ListJoinTokensRequest{IncludeInactive: true})
	if err != nil {
		t.Fatal(err)
	}

	flaky.fail.Store(true)
	refused := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "audit trail") {
			t.Fatalf("%s with the audit trail down = %v, want Unavailable", what, err)
		}
	}
	_, err = fc.CreateJoinToken(ctx, &flotillav1.CreateJoinTokenRequest{})
	refused("CreateJoinToken", err)
	_, err = admin.CreateAPIToken(ctx, &flotillav1.CreateAPITokenRequest{Name: "x", Role: flotillav1.Role_ROLE_ADMIN})
	refused("CreateAPIToken", err)
	_, _, err = h.register(token, "web-1", nil)
	refused("Register", err)
	// A call refused by authentication keeps its own answer.
	if _, err := fc.CreateJoinToken(context.Background(), &flotillav1.CreateJoinTokenRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous CreateJoinToken = %v", err)
	}
	// Reads go on.
	tokensDuring, err := admin.ListJoinTokens(ctx, &flotillav1.ListJoinTokensRequest{IncludeInactive: true})
	if err != nil {
		t.Fatalf("ListJoinTokens with the audit trail down: %v", err)
	}
	if len(tokensDuring.GetTokens()) != len(tokensBefore.GetTokens()) || tokensDuring.GetTokens()[0].GetUses() != 0 {
		t.Fatalf("a refused call changed something: %v", tokensDuring)
	}
	if agents, _ := fc.ListAgents(ctx, &flotillav1.ListAgentsRequest{}); len(agents.GetAgents()) != 0 {
		t.Fatal("an agent registered while the audit trail was down")
	}
	metrics := h.scrape()
	for _, want := range []string{`flotilla_audit_write_failures_total{stage="before"} 3`, `flotilla_audit_write_failures_total{stage="after"} 4`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	flaky.fail.Store(false)
	if _, _, err := h.register(token, "web-1", nil); err != nil {
		t.Fatalf("Register once the audit trail is back: %v", err)
	}
}

func TestTLS12IsRefused(t *testing.T) {
	h := start(t)
	raw, err := h.cp.Listener().DialContext(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cfg := h.serverTLS()
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	cfg.NextProtos = []string{"h2"}
	conn := tls.Client(raw, cfg)
	err = conn.HandshakeContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.2 handshake = %v, want a protocol version alert", err)
	}
	// The same client at TLS 1.3 gets through.
	_, err = h.fleet().ListAgents(h.operatorCtx(h.admin), &flotillav1.ListAgentsRequest{})
	if err != nil {
		t.Fatalf("TLS 1.3: %v", err)
	}
	// And through gRPC, TLS 1.2 fails the call.
	_, err = flotillav1.NewFleetServiceClient(h.dial(cfg)).ListAgents(h.operatorCtx(h.admin), &flotillav1.ListAgentsRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC over TLS 1.2 = %v, want Unavailable", err)
	}
}

func TestFilePermissionsRefused(t *testing.T) {
	servertest.SQLiteOnly(t, "the mode of the data directory's flotilla.db is checked, and server.New runs on the SQLite file")
	dir := t.TempDir()
	first := start(t, servertest.WithDataDir(dir))
	// Serving for sure before it stops (Run started with a cancelled
	// context reports the stopped gRPC server as an error).
	if _, err := first.fleet().ListAgents(first.operatorCtx(first.admin), &flotillav1.ListAgentsRequest{}); err != nil {
		t.Fatal(err)
	}
	first.stop()
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Store.Path = filepath.Join(dir, "flotilla.db")
	start := func() error {
		srv, err := server.New(context.Background(), cfg, zaptest.NewLogger(t), "test")
		if err == nil {
			srv.Close()
		}
		return err
	}
	if err := start(); err != nil {
		t.Fatalf("a correct data directory is refused: %v", err)
	}
	tests := []struct {
		path string
		mode os.FileMode
		fix  string
	}{
		{dir, 0o755, "chmod 700 " + dir},
		{dir, 0o750, "chmod 700 " + dir},
		{filepath.Join(dir, "ca.key"), 0o644, "chmod 600 " + filepath.Join(dir, "ca.key")},
		{filepath.Join(dir, "server.key"), 0o640, "chmod 600 " + filepath.Join(dir, "server.key")},
		{filepath.Join(dir, auth.AdminTokenFile), 0o644, "chmod 600 " + filepath.Join(dir, auth.AdminTokenFile)},
		{filepath.Join(dir, "flotilla.db"), 0o664, "chmod 600 " + filepath.Join(dir, "flotilla.db")},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %04o", filepath.Base(tt.path), tt.mode), func(t *testing.T) {
			info, err := os.Stat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(tt.path, tt.mode); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(tt.path, info.Mode().Perm())
			err = start()
			if err == nil || !strings.Contains(err.Error(), tt.fix) || !strings.Contains(err.Error(), fmt.Sprintf("%04o", tt.mode)) {
				t.Fatalf("start with %s at %04o = %v, want an error naming the file, its mode and %q", tt.path, tt.mode, err, tt.fix)
			}
		})
	}
	if err := start(); err != nil {
		t.Fatalf("after restoring the modes: %v", err)
	}
}

// TestNoSecretsInLogs runs every call that handles a secret and checks that
// no secret reaches a log line, an error message or the audit trail.
func TestNoSecretsInLogs(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := start(t, servertest.WithLogger(zap.New(core)))
	fc, admin, ctx := h.fleet(), h.adminClient(), h.operatorCtx(h.admin)
	secrets := []string{h.admin}
	var errs []error

	join, err := fc.CreateJoinToken(ctx, &flotillav1.CreateJoinTokenRequest{MaxUses: 3})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, join.GetToken())
	agent, _, err := h.register(join.GetToken(), "web-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Refused registrations with a real and a made-up token.
	_, _, err = h.register(join.GetToken(), "web;bad", nil)
	errs = append(errs, err)
	wrong := "fjt_" + strings.Repeat("q", 52)
	secrets = append(secrets, wrong)
	_, _, err = h.register(wrong, "web-2", nil)
	errs = append(errs, err)

	apiTok, err := admin.CreateAPIToken(ctx, &flotillav1.CreateAPITokenRequest{Name: "ci", Role: flotillav1.Role_ROLE_OPERATOR})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, apiTok.GetSecret())
	if _, err := fc.ListAgents(h.operatorCtx(apiTok.GetSecret()), &flotillav1.ListAgentsRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err = fc.CreateJoinToken(h.operatorCtx(apiTok.GetSecret()), &flotillav1.CreateJoinTokenRequest{})
	errs = append(errs, err)
	if _, err := admin.RevokeAPIToken(ctx, &flotillav1.RevokeAPITokenRequest{TokenId: apiTok.GetToken().GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = fc.ListAgents(h.operatorCtx(apiTok.GetSecret()), &flotillav1.ListAgentsRequest{})
	errs = append(errs, err)
	_, err = fc.ListAgents(h.operatorCtx("fat_"+strings.Repeat("z", 52)), &flotillav1.ListAgentsRequest{})
	errs = append(errs, err)
	secrets = append(secrets, "fat_"+strings.Repeat("z", 52))

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := admin.IssueOperatorCertificate(ctx, &flotillav1.IssueOperatorCertificateRequest{Name: "ada", Role: flotillav1.Role_ROLE_ADMIN, Csr: newCSR(t, key)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.renew(agent); err != nil {
		t.Fatal(err)
	}

	for _, e := range logs.All() {
		line := e.Message
		enc := zapcore.NewMapObjectEncoder()
		for _, f := range e.Context {
			f.AddTo(enc)
		}
		line += fmt.Sprint(enc.Fields)
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("log line %q contains a secret", e.Message)
			}
		}
	}
	for _, err := range errs {
		if err == nil {
			t.Error("a call expected to fail succeeded")
			continue
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error %v contains a secret", err)
			}
		}
	}
	events, err := admin.ListAuditEvents(ctx, &flotillav1.ListAuditEventsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.GetEvents()) < 8 {
		t.Fatalf("only %d audit events", len(events.GetEvents()))
	}
	for _, s := range secrets {
		if strings.Contains(events.String(), s) {
			t.Errorf("the audit trail contains a secret")
		}
	}
	if logs.FilterMessage("audit").Len() == 0 {
		t.Error("no audit log lines: the check above saw nothing")
	}
}
