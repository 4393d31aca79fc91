package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	cplog "flotilla.dev/controlplane/internal/logging"
)

// The fuzz targets feed every request validator the wire bytes of a
// request, so the fuzzer reaches every field with any value a hostile
// client can send. Each validator must never panic, must refuse with
// InvalidArgument only, and what it accepts must respect the input limits.
// Seeds: the f.Add calls below and testdata/fuzz/<target>/.

// fuzzMessage adds seeds (valid requests) and runs check on every input
// that decodes as M.
func fuzzMessage[M proto.Message](f *testing.F, newMsg func() M, seeds []M, check func(*testing.T, M)) {
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := newMsg()
		if proto.Unmarshal(b, m) != nil {
			return
		}
		check(t, m)
	})
}

// refusal fails unless err is nil or an InvalidArgument status.
func refusal(t *testing.T, err error) bool {
	t.Helper()
	if err == nil {
		return false
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("refused with %v, want InvalidArgument", err)
	}
	return true
}

func seedCSR(f testing.TB) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		f.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func FuzzValidateRegister(f *testing.F) {
	seeds := []*flotillav1.RegisterRequest{
		{JoinToken: "fjt_abc", Csr: []byte("csr"), Hostname: "web-1.example.com", Labels: map[string]string{"env": "prod", "role": "web"}},
		{JoinToken: "x", Csr: []byte{0}, Hostname: "h"},
	}
	fuzzMessage(f, func() *flotillav1.RegisterRequest { return new(flotillav1.RegisterRequest) }, seeds, func(t *testing.T, req *flotillav1.RegisterRequest) {
		if refusal(t, validateRegister(req)) {
			return
		}
		if len(req.GetJoinToken()) > maxTokenLength || len(req.GetCsr()) > maxCSRBytes || len(req.GetHostname()) > maxHostnameLength ||
			len(req.GetLabels()) > maxLabels || req.GetHostname() == "" {
			t.Fatalf("accepted a request over the limits: %d-byte token, %d-byte CSR, %d-byte hostname, %d labels",
				len(req.GetJoinToken()), len(req.GetCsr()), len(req.GetHostname()), len(req.GetLabels()))
		}
		if _, err := newAgentID(req.GetHostname()); err != nil {
			t.Fatalf("newAgentID(%q): %v", req.GetHostname(), err)
		}
	})
}

func FuzzValidateHello(f *testing.F) {
	seeds := []*flotillav1.Hello{
		{AgentId: "web-1-abc123", Version: "v1.2.3", Hostname: "web-1", Labels: map[string]string{"env": "prod"},
			Capabilities: []string{"docker", "postgres"}, StartedAt: timestamppb.Now(),
			Containers: []*flotillav1.ManagedContainer{{Name: "web", Image: "registry.internal:5000/shop/web:v2", State: "running"}}},
	}
	fuzzMessage(f, func() *flotillav1.Hello { return new(flotillav1.Hello) }, seeds, func(t *testing.T, h *flotillav1.Hello) {
		if refusal(t, validateHello(h)) {
			return
		}
		if len(h.GetCapabilities()) > maxCapabilities || len(h.GetContainers()) > maxContainers || len(h.GetLabels()) > maxLabels ||
			len(h.GetVersion()) > maxShortString || len(h.GetHostname()) > maxHostnameLength {
			t.Fatal("accepted a hello over the limits")
		}
	})
}

func FuzzValidateHeartbeat(f *testing.F) {
	seeds := []*flotillav1.Heartbeat{
		{ObservedAt: timestamppb.Now(),
			Host: &flotillav1.HostMetrics{CpuPercent: 12.5, MemoryPercent: 40, Disks: []*flotillav1.DiskUsage{{Path: "/", UsedPercent: 55}}},
			App: &flotillav1.AppHealth{Url: "http://127.0.0.1:8080/health", Healthy: true, Status: "healthy", Database: "ok", Cache: "ok",
				Latency: durationpb.New(12 * time.Millisecond)},
			Databases: []*flotillav1.DatabaseStats{{Name: "shop", Connections: 7}}},
	}
	fuzzMessage(f, func() *flotillav1.Heartbeat { return new(flotillav1.Heartbeat) }, seeds, func(t *testing.T, hb *flotillav1.Heartbeat) {
		if refusal(t, validateHeartbeat(hb)) {
			return
		}
		if len(hb.GetHost().GetDisks()) > maxDisks || len(hb.GetDatabases()) > maxDatabases || len(hb.GetContainers()) > maxContainers {
			t.Fatal("accepted a heartbeat over the limits")
		}
	})
}

func FuzzValidateCreateJoinToken(f *testing.F) {
	seeds := []*flotillav1.CreateJoinTokenRequest{
		{Ttl: durationpb.New(time.Hour), MaxUses: 10, Labels: map[string]string{"env": "prod"}, Description: "web fleet"},
		{},
	}
	fuzzMessage(f, func() *flotillav1.CreateJoinTokenRequest { return new(flotillav1.CreateJoinTokenRequest) }, seeds,
		func(t *testing.T, req *flotillav1.CreateJoinTokenRequest) {
			ttl, uses, err := validateCreateJoinToken(req)
			if refusal(t, err) {
				return
			}
			if ttl <= 0 || ttl > maxJoinTokenTTL || uses < 1 || uses > maxJoinTokenUses || len(req.GetDescription()) > maxDescription {
				t.Fatalf("accepted ttl %s, %d uses", ttl, uses)
			}
		})
}

func FuzzListAgentsQuery(f *testing.F) {
	seeds := []*flotillav1.ListAgentsRequest{
		{Selector: "env=dev,role in (web,api)", States: []flotillav1.AgentState{flotillav1.AgentState_AGENT_STATE_CONNECTED}, PageSize: 50,
			PageToken: encodePageToken(listingAgents, pageFilter("env=dev,role in (web,api)", "1,"), "web-1-abc123")},
		{Selector: "!canary"},
	}
	fuzzMessage(f, func() *flotillav1.ListAgentsRequest { return new(flotillav1.ListAgentsRequest) }, seeds, func(t *testing.T, req *flotillav1.ListAgentsRequest) {
		q, err := listAgentsQuery(req)
		if refusal(t, err) {
			return
		}
		if q.Limit < 1 || q.Limit > maxPageSize || len(q.States) > maxStateFilters {
			t.Fatalf("accepted limit %d, %d states", q.Limit, len(q.States))
		}
		q.Selector.Matches(map[string]string{"env": "dev"})
	})
}

func FuzzValidateCreateAPIToken(f *testing.F) {
	seeds := []*flotillav1.CreateAPITokenRequest{
		{Name: "ci-deployer", Role: flotillav1.Role_ROLE_OPERATOR, Ttl: durationpb.New(24 * time.Hour)},
		{Name: "admin.2", Role: flotillav1.Role_ROLE_ADMIN},
	}
	fuzzMessage(f, func() *flotillav1.CreateAPITokenRequest { return new(flotillav1.CreateAPITokenRequest) }, seeds,
		func(t *testing.T, req *flotillav1.CreateAPITokenRequest) {
			role, ttl, err := validateCreateAPIToken(req)
			if refusal(t, err) {
				return
			}
			if role < 1 || role > 3 || ttl < 0 || ttl > maxAPITokenTTL || len(req.GetName()) > maxNameLength || !apiTokenName.MatchString(req.GetName()) {
				t.Fatalf("accepted role %v ttl %s name %q", role, ttl, req.GetName())
			}
		})
}

func FuzzValidateIssueOperatorCertificate(f *testing.F) {
	csr := seedCSR(f)
	seeds := []*flotillav1.IssueOperatorCertificateRequest{
		{Name: "alice@ops", Role: flotillav1.Role_ROLE_ADMIN, Csr: csr, Ttl: durationpb.New(8 * time.Hour)},
		{Name: "bob", Role: flotillav1.Role_ROLE_VIEWER, Csr: csr},
	}
	fuzzMessage(f, func() *flotillav1.IssueOperatorCertificateRequest {
		return new(flotillav1.IssueOperatorCertificateRequest)
	}, seeds,
		func(t *testing.T, req *flotillav1.IssueOperatorCertificateRequest) {
			role, ttl, err := validateIssueOperatorCertificate(req)
			if refusal(t, err) {
				return
			}
			if role < 1 || role > 3 || ttl < minOperatorCertTTL || ttl > maxOperatorCertTTL || !operatorCertName.MatchString(req.GetName()) {
				t.Fatalf("accepted role %v ttl %s name %q", role, ttl, req.GetName())
			}
		})
}

func FuzzAuditQuery(f *testing.F) {
	seeds := []*flotillav1.ListAuditEventsRequest{
		{Principal: "token:at-abc", Method: "/flotilla.v1.AdminService/CreateAPIToken", FailedOnly: true, PageSize: 10,
			PageToken: encodePageToken(listingAuditEvents, pageFilter("token:at-abc", "/flotilla.v1.AdminService/CreateAPIToken", "true", ""), "42")},
		{Since: timestamppb.Now(), PageToken: "YXVkaXQ6NDI"},
		{RequestId: "req-7f3a.2"},
		{},
	}
	fuzzMessage(f, func() *flotillav1.ListAuditEventsRequest { return new(flotillav1.ListAuditEventsRequest) }, seeds,
		func(t *testing.T, req *flotillav1.ListAuditEventsRequest) {
			q, err := auditQuery(req)
			if refusal(t, err) {
				return
			}
			if q.Limit < 1 || q.Limit > maxAuditPage || q.BeforeID < 0 {
				t.Fatalf("accepted limit %d, before %d", q.Limit, q.BeforeID)
			}
			if q.RequestID != "" && !cplog.ValidRequestID(q.RequestID) {
				t.Fatalf("accepted request ID %q", q.RequestID)
			}
		})
}

func FuzzValidateDeregister(f *testing.F) {
	seeds := []*flotillav1.DeregisterAgentRequest{{AgentId: "web-1-abc123", Reason: "host decommissioned"}}
	fuzzMessage(f, func() *flotillav1.DeregisterAgentRequest { return new(flotillav1.DeregisterAgentRequest) }, seeds,
		func(t *testing.T, req *flotillav1.DeregisterAgentRequest) {
			if refusal(t, validateDeregister(req)) {
				return
			}
			if req.GetAgentId() == "" || len(req.GetReason()) > maxDeregisterReasonLength {
				t.Fatal("accepted an empty agent ID or a long reason")
			}
		})
}

func FuzzValidateRenew(f *testing.F) {
	seeds := []*flotillav1.RenewCertificateRequest{{Csr: seedCSR(f)}}
	fuzzMessage(f, func() *flotillav1.RenewCertificateRequest { return new(flotillav1.RenewCertificateRequest) }, seeds,
		func(t *testing.T, req *flotillav1.RenewCertificateRequest) {
			if refusal(t, validateRenew(req)) {
				return
			}
			if len(req.GetCsr()) == 0 || len(req.GetCsr()) > maxCSRBytes {
				t.Fatal("accepted a CSR over the limits")
			}
		})
}
