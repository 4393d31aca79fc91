package audit

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/store"
)

func TestAudited(t *testing.T) {
	tests := map[string]bool{
		flotillav1.FleetService_CreateJoinToken_FullMethodName:             true,
		flotillav1.FleetService_RunCommand_FullMethodName:                  true,
		flotillav1.FleetService_CancelCommand_FullMethodName:               true,
		flotillav1.FleetService_ListAgents_FullMethodName:                  false,
		flotillav1.FleetService_GetAgent_FullMethodName:                    false,
		flotillav1.FleetService_WatchCommand_FullMethodName:                false,
		flotillav1.RolloutService_StartRollout_FullMethodName:              true,
		flotillav1.RolloutService_PutService_FullMethodName:                true,
		flotillav1.RolloutService_WatchRollout_FullMethodName:              false,
		flotillav1.AdminService_CreateAPIToken_FullMethodName:              true,
		flotillav1.AdminService_DeregisterAgent_FullMethodName:             true,
		flotillav1.AdminService_IssueOperatorCertificate_FullMethodName:    true,
		flotillav1.AdminService_ListAuditEvents_FullMethodName:             false,
		flotillav1.AgentService_Register_FullMethodName:                    true,
		flotillav1.AgentService_RenewCertificate_FullMethodName:            true,
		flotillav1.AgentService_Connect_FullMethodName:                     false,
		"/grpc.health.v1.Health/Check":                                     false,
		"/flotilla.v1.FleetService/":                                       false,
		"/flotilla.v1.FleetService/Run/x":                                  false,
		"flotilla.v1.FleetService":                                         false,
		"/flotilla.v1.OtherService/Create":                                 false,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":        false,
		"/flotilla.v1.AgentService/Unregister":                             false,
		flotillav1.RolloutService_AbortRollout_FullMethodName:              true,
		flotillav1.RolloutService_PauseRollout_FullMethodName:              true,
		flotillav1.RolloutService_ResumeRollout_FullMethodName:             true,
		flotillav1.RolloutService_GetService_FullMethodName:                false,
		flotillav1.RolloutService_ListServices_FullMethodName:              false,
		flotillav1.FleetService_ListCommands_FullMethodName:                false,
		flotillav1.AdminService_ListJoinTokens_FullMethodName:              false,
		flotillav1.AdminService_RevokeJoinToken_FullMethodName:             true,
		flotillav1.RolloutService_GetRollout_FullMethodName:                false,
		flotillav1.FleetService_GetCommand_FullMethodName:                  false,
		flotillav1.AdminService_ListAPITokens_FullMethodName:               false,
		flotillav1.AdminService_RevokeAPIToken_FullMethodName:              true,
		flotillav1.RolloutService_RollbackService_FullMethodName:           true,
		flotillav1.RolloutService_ListRollouts_FullMethodName:              false,
		flotillav1.RolloutService_ListRemediations_FullMethodName:          false,
		"/flotilla.v1.AgentService/Register/../../FleetService/RunCommand": false,
	}
	for m, want := range tests {
		if got := Audited(m); got != want {
			t.Errorf("Audited(%q) = %v, want %v", m, got, want)
		}
	}
}

// TestAuditedMethodsAreUnary guards the interceptors' reach: they are unary,
// so an audited method that streams would go unrecorded.
func TestAuditedMethodsAreUnary(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{flotillav1.AgentService_ServiceDesc, flotillav1.FleetService_ServiceDesc,
		flotillav1.RolloutService_ServiceDesc, flotillav1.AdminService_ServiceDesc, flotillav1.BackupService_ServiceDesc} {
		for _, st := range sd.Streams {
			if m := "/" + sd.ServiceName + "/" + st.StreamName; Audited(m) {
				t.Errorf("%s is audited but streams; the unary audit interceptors never see it", m)
			}
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name   string
		req    any
		absent []string
		want   []string
	}{
		{"register", &flotillav1.RegisterRequest{JoinToken: "fjt_supersecret", Csr: []byte("0123456789"), Hostname: "web-1",
			Labels: map[string]string{"env": "prod"}},
			[]string{"fjt_supersecret", "MDEyMzQ1Njc4OQ"}, []string{`"join_token":"[REDACTED]"`, `"csr":"[elided: 10 bytes]"`, `"hostname":"web-1"`, `"env":"prod"`}},
		{"operator certificate", &flotillav1.IssueOperatorCertificateRequest{Name: "alice", Role: flotillav1.Role_ROLE_ADMIN, Csr: []byte("abc")},
			[]string{"YWJj"}, []string{`"name":"alice"`, `"role":"ROLE_ADMIN"`, `"csr":"[elided: 3 bytes]"`}},
		{"renew", &flotillav1.RenewCertificateRequest{Csr: []byte("abcd")}, nil, []string{`"csr":"[elided: 4 bytes]"`}},
		{"token id is not a secret", &flotillav1.RevokeAPITokenRequest{TokenId: "at-123"}, nil, []string{`"token_id":"at-123"`}},
		{"labels named like secrets", &flotillav1.CreateJoinTokenRequest{Labels: map[string]string{"password": "hunter2", "role": "web"}},
			[]string{"hunter2"}, []string{`"role":"web"`}},
		{"webhook subscription", &flotillav1.CreateSubscriptionRequest{Name: "ops", Sink: &flotillav1.Sink{Kind: &flotillav1.Sink_Webhook{
			Webhook: &flotillav1.WebhookSink{Url: "https://hooks.example.com/in?key=k3y", Secrets: []string{"whsec_c2VjcmV0"}}}}},
			[]string{"k3y", "whsec_c2VjcmV0"}, []string{`"name":"ops"`, `"url":"[REDACTED]"`, `"secrets":"[REDACTED]"`}},
		{"slack subscription", &flotillav1.UpdateSubscriptionRequest{SubscriptionId: "ns-1", Sink: &flotillav1.Sink{Kind: &flotillav1.Sink_Slack{
			Slack: &flotillav1.SlackSink{WebhookUrl: "https://hooks.slack.com/services/T0/B0/xyz"}}}},
			[]string{"T0/B0/xyz"}, []string{`"subscription_id":"ns-1"`, `"webhook_url":"[REDACTED]"`}},
		{"not a message", "plain", []string{"plain"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Redact(tt.req)
			for _, a := range tt.absent {
				if strings.Contains(got, a) {
					t.Errorf("Redact = %s; contains %q", got, a)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("Redact = %s; lacks %q", got, w)
				}
			}
		})
	}
	if s := sensitivity("page_token"); s != plain {
		t.Errorf("page_token is treated as a secret")
	}
	for _, n := range []string{"api_token", "client_secret", "db_password", "ssh_private_key", "Credentials", "token", "secret"} {
		if sensitivity(n) != secret {
			t.Errorf("%s is not treated as a secret", n)
		}
	}
	big := &flotillav1.CreateJoinTokenRequest{Description: strings.Repeat("x", 40000)}
	if got := Redact(big); len(got) > maxRequest+64 || !strings.Contains(got, "truncated") {
		t.Errorf("Redact of a big request is %d bytes", len(got))
	}
}

// memStore is an in-memory AuditStore that can be made to fail.
type memStore struct {
	mu     sync.Mutex
	events []store.AuditEvent
	fail   bool
}

var errDown = errors.New("disk on fire")

func (m *memStore) AppendAuditEvent(_ context.Context, e store.AuditEvent) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return 0, errDown
	}
	e.ID = int64(len(m.events) + 1)
	m.events = append(m.events, e)
	return e.ID, nil
}

func (m *memStore) FinishAuditEvent(_ context.Context, id int64, code, msg string, d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errDown
	}
	e := &m.events[id-1]
	e.Code, e.Message, e.Duration = code, msg, d
	return nil
}

func (m *memStore) ListAuditEvents(context.Context, store.AuditQuery) ([]store.AuditEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]store.AuditEvent(nil), m.events...), nil
}

func (m *memStore) setFail(f bool) { m.mu.Lock(); m.fail = f; m.mu.Unlock() }

// chain runs outer, a fake authentication step, gate and handler, as the
// server's interceptor chain does.
func chain(r *Recorder, authn func(context.Context) (context.Context, error), handler grpc.UnaryHandler) func(ctx context.Context, method string, req any) (any, error) {
	outer, gate := r.UnaryServerInterceptor(), r.UnaryGateInterceptor()
	return func(ctx context.Context, method string, req any) (any, error) {
		info := &grpc.UnaryServerInfo{FullMethod: method}
		return outer(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			ctx, err := authn(ctx)
			if err != nil {
				return nil, err
			}
			return gate(ctx, req, info, handler)
		})
	}
}

func TestInterceptors(t *testing.T) {
	st := &memStore{}
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	r, err := New(Config{Store: st, Logger: zap.New(core), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	handler := func(ctx context.Context, req any) (any, error) {
		ran++
		return "ok", nil
	}
	admin := auth.Principal{Kind: "operator", ID: "at-admin", Role: auth.RoleAdmin}
	allow := func(ctx context.Context) (context.Context, error) { return auth.WithPrincipal(ctx, admin), nil }
	deny := func(ctx context.Context) (context.Context, error) {
		return nil, status.Error(codes.Unauthenticated, "invalid API token")
	}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 4444}})
	req := &flotillav1.CreateJoinTokenRequest{Description: "web"}
	method := flotillav1.FleetService_CreateJoinToken_FullMethodName

	// Allowed: one row, written before and completed after.
	if _, err := chain(r, allow, handler)(ctx, method, req); err != nil {
		t.Fatal(err)
	}
	// Refused by authentication: one row, written after.
	if _, err := chain(r, deny, handler)(ctx, method, req); status.Code(err) != codes.Unauthenticated {
		t.Fatal(err)
	}
	// Not audited: no row.
	if _, err := chain(r, allow, handler)(ctx, flotillav1.FleetService_ListAgents_FullMethodName, &flotillav1.ListAgentsRequest{}); err != nil {
		t.Fatal(err)
	}
	evs, _ := st.ListAuditEvents(ctx, store.AuditQuery{})
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2: %+v", len(evs), evs)
	}
	ok, denied := evs[0], evs[1]
	if ok.Principal != "token:at-admin" || ok.Role != "admin" || ok.Code != "OK" || ok.Method != method ||
		ok.Peer != "10.0.0.9:4444" || ok.Request != `{"description":"web"}` {
		t.Errorf("allowed event = %+v", ok)
	}
	if denied.Principal != Anonymous || denied.Code != "Unauthenticated" || denied.Message != "invalid API token" {
		t.Errorf("denied event = %+v", denied)
	}
	if ran != 2 {
		t.Fatalf("handler ran %d times, want 2", ran)
	}
	if n := logs.FilterMessage("audit").Len(); n != 2 {
		t.Errorf("%d audit log lines, want 2", n)
	}

	// Fail closed: with the store down, an allowed call is refused before
	// it runs, and both failures are counted and logged.
	st.setFail(true)
	_, err = chain(r, allow, handler)(ctx, method, req)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "audit trail") {
		t.Fatalf("call with the audit store down = %v, want Unavailable", err)
	}
	if ran != 2 {
		t.Fatal("the handler ran although its audit row could not be written")
	}
	// A refused call stays refused with its own code.
	if _, err := chain(r, deny, handler)(ctx, method, req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("denied call with the audit store down = %v", err)
	}
	if got := failures(t, reg, stageBefore); got != 1 {
		t.Errorf("before failures = %v, want 1", got)
	}
	if got := failures(t, reg, stageAfter); got != 2 {
		t.Errorf("after failures = %v, want 2", got)
	}
	if n := logs.FilterMessageSnippet("AUDIT WRITE FAILED").Len(); n != 3 {
		t.Errorf("%d loud log lines, want 3", n)
	}

	// A gate without the recorder refuses audited calls.
	gate := r.UnaryGateInterceptor()
	_, err = gate(ctx, req, &grpc.UnaryServerInfo{FullMethod: method}, handler)
	if status.Code(err) != codes.Internal {
		t.Fatalf("gate alone = %v, want Internal", err)
	}
}

func TestFinishSurvivesCancellation(t *testing.T) {
	st := &memStore{}
	r, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	handler := func(context.Context, any) (any, error) {
		cancel() // the client hangs up while the call runs
		return nil, status.Error(codes.Canceled, "context canceled")
	}
	allow := func(ctx context.Context) (context.Context, error) {
		return auth.WithPrincipal(ctx, auth.Principal{Kind: "agent", ID: "web-1"}), nil
	}
	_, _ = chain(r, allow, handler)(ctx, flotillav1.AgentService_RenewCertificate_FullMethodName, &flotillav1.RenewCertificateRequest{})
	evs, _ := st.ListAuditEvents(context.Background(), store.AuditQuery{})
	if len(evs) != 1 || evs[0].Code != "Canceled" || evs[0].Principal != "agent:web-1" || evs[0].Role != "" {
		t.Fatalf("events = %+v", evs)
	}
}

// failures reads flotilla_audit_write_failures_total{stage} from reg.
func failures(t *testing.T, reg *prometheus.Registry, stage string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "flotilla_audit_write_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == stage {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no flotilla_audit_write_failures_total{stage=%q}", stage)
	return 0
}

// TestRecordSystem: an action the control plane took on its own is one
// complete row (principal, method, request as JSON, OK), and a failed
// write is counted, not returned.
func TestRecordSystem(t *testing.T) {
	st := &memStore{}
	reg := prometheus.NewRegistry()
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	r, err := New(Config{Store: st, Registerer: reg, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	req := &flotillav1.RemediationEvent{Service: "web", AgentId: "a1", Reason: "threshold"}
	r.RecordSystem(context.Background(), "system:remediation", "/system/remediation.restart", req, "threshold: working set 90 MiB")
	if len(st.events) != 1 {
		t.Fatalf("%d events, want 1", len(st.events))
	}
	ev := st.events[0]
	if ev.Principal != "system:remediation" || ev.Role != "system" || ev.Method != "/system/remediation.restart" || ev.Code != "OK" ||
		!ev.At.Equal(at) || !strings.Contains(ev.Request, `"agent_id":"a1"`) || ev.Message != "threshold: working set 90 MiB" {
		t.Fatalf("event %+v", ev)
	}
	st.setFail(true)
	r.RecordSystem(context.Background(), "system:remediation", "/system/remediation.escalation", req, "restarts are not helping")
	if got := testutil.ToFloat64(r.failures.WithLabelValues(stageAfter)); got != 1 {
		t.Errorf("failed writes counted %v, want 1", got)
	}
}
