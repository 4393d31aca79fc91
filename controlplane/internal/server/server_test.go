package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/pki"
	"flotilla.dev/controlplane/internal/server"
	"flotilla.dev/controlplane/internal/server/servertest"
)

func TestMain(m *testing.M) { servertest.Main(m) }

// harness is a control plane (servertest) with the helpers of these tests.
type harness struct {
	t        *testing.T
	cp       *servertest.ControlPlane
	srv      *server.Server
	httpAddr string
	admin    string
}

// start starts a control plane with the test defaults (see servertest.Config)
// adjusted by opts.
func start(t *testing.T, opts ...servertest.Option) *harness {
	t.Helper()
	return harnessOf(t, servertest.Start(t, opts...))
}

func harnessOf(t *testing.T, cp *servertest.ControlPlane) *harness {
	return &harness{t: t, cp: cp, srv: cp.Server, httpAddr: cp.HTTPAddr, admin: cp.AdminToken}
}

// lostAfter sets agent_lost_after.
func lostAfter(d time.Duration) servertest.Option {
	return servertest.WithConfig(func(c *config.Config) { c.AgentLostAfter = config.Duration(d) })
}

// stop stops the control plane (as SIGTERM does) and closes its store.
func (h *harness) stop() { h.cp.Stop() }

// restart stops the control plane and starts a new one on the same data
// directory and store.
func (h *harness) restart() *harness { return harnessOf(h.t, h.cp.Restart()) }

// dial connects with the given client TLS config.
func (h *harness) dial(tlsCfg *tls.Config) *grpc.ClientConn { return h.cp.Dial(tlsCfg) }

func (h *harness) serverTLS() *tls.Config { return h.cp.ClientTLS() }

func (h *harness) operatorCtx(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func (h *harness) fleet() flotillav1.FleetServiceClient {
	return flotillav1.NewFleetServiceClient(h.dial(h.serverTLS()))
}

func (h *harness) joinToken(req *flotillav1.CreateJoinTokenRequest) string {
	h.t.Helper()
	resp, err := h.fleet().CreateJoinToken(h.operatorCtx(h.admin), req)
	if err != nil {
		h.t.Fatalf("CreateJoinToken: %v", err)
	}
	return resp.GetToken()
}

// testAgent is a minimal agent: a key, a CSR, and an mTLS stream.
type testAgent struct {
	key  *ecdsa.PrivateKey
	id   string
	cert tls.Certificate
}

func newCSR(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func (h *harness) register(token, hostname string, labels map[string]string) (*testAgent, *flotillav1.RegisterResponse, error) {
	h.t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	client := flotillav1.NewAgentServiceClient(h.dial(h.serverTLS()))
	resp, err := client.Register(context.Background(), &flotillav1.RegisterRequest{
		JoinToken: token, Csr: newCSR(h.t, key), Hostname: hostname, Labels: labels,
	})
	if err != nil {
		return nil, nil, err
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	pair, err := tls.X509KeyPair(resp.GetCertificatePem(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		h.t.Fatal(err)
	}
	return &testAgent{key: key, id: resp.GetAgentId(), cert: pair}, resp, nil
}

func (h *harness) connect(a *testAgent) (grpc.BidiStreamingClient[flotillav1.ConnectRequest, flotillav1.ConnectResponse], context.CancelFunc) {
	h.t.Helper()
	cfg := h.serverTLS()
	cfg.Certificates = []tls.Certificate{a.cert}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := flotillav1.NewAgentServiceClient(h.dial(cfg)).Connect(ctx)
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	h.t.Cleanup(cancel)
	return stream, cancel
}

func hello(id string, labels map[string]string) *flotillav1.ConnectRequest {
	return &flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Hello{Hello: &flotillav1.Hello{
		AgentId: id, Version: "v-test", Hostname: "web-1", Labels: labels, Capabilities: []string{"heartbeat"},
		StartedAt: timestamppb.Now(),
	}}}
}

func heartbeat(cpu float64, healthy bool) *flotillav1.ConnectRequest {
	return &flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Heartbeat{Heartbeat: &flotillav1.Heartbeat{
		ObservedAt: timestamppb.Now(),
		Host:       &flotillav1.HostMetrics{CpuPercent: cpu, MemoryPercent: 40, Disks: []*flotillav1.DiskUsage{{Path: "/", UsedPercent: 55}}, Load1: 0.5},
		App: &flotillav1.AppHealth{Url: "http://127.0.0.1:8080/health", Healthy: healthy, Status: "healthy", Database: "ok", Cache: "ok",
			HttpStatus: 200, Latency: durationpb.New(12 * time.Millisecond)},
	}}}
}

// eventually polls cond every 20ms until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) agentState(id string) flotillav1.AgentState {
	resp, err := h.fleet().GetAgent(h.operatorCtx(h.admin), &flotillav1.GetAgentRequest{AgentId: id})
	if err != nil {
		h.t.Fatalf("GetAgent: %v", err)
	}
	return resp.GetAgent().GetState()
}

func (h *harness) scrape() string {
	h.t.Helper()
	resp, err := http.Get("http://" + h.httpAddr + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestAgentLifecycle(t *testing.T) {
	// agent_lost_after must outlast the checks made between the agent's
	// one heartbeat and its going away, even on a loaded machine (1 s did
	// not, under the race detector at a load of 20).
	h := start(t, lostAfter(4*time.Second))
	token := h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 2, Labels: map[string]string{"env": "staging"}})
	agent, resp, err := h.register(token, "web-1.example.com", map[string]string{"env": "prod", "role": "web"})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if !strings.HasPrefix(agent.id, "web-1-") {
		t.Errorf("agent ID %q does not derive from the hostname", agent.id)
	}
	if got := resp.GetLabels(); got["env"] != "staging" || got["role"] != "web" {
		t.Errorf("labels = %v, want env pinned to staging and role claimed as web", got)
	}
	if id, err := pki.AgentIDFromCertificate(agent.cert.Leaf); err != nil || id != agent.id {
		t.Errorf("certificate identity = %q, %v; want %q", id, err, agent.id)
	}

	stream, cancel := h.connect(agent)
	if err := stream.Send(hello(agent.id, map[string]string{"env": "prod", "role": "web"})); err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetWelcome().GetAgentId() != agent.id {
		t.Fatalf("first message = %v, %v; want a welcome for %s", first, err, agent.id)
	}
	if err := stream.Send(heartbeat(37.5, true)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the heartbeat to be recorded", func() bool {
		resp, err := h.fleet().GetAgent(h.operatorCtx(h.admin), &flotillav1.GetAgentRequest{AgentId: agent.id})
		return err == nil && resp.GetAgent().GetLastHeartbeat().GetHost().GetCpuPercent() == 37.5
	})
	got, _ := h.fleet().GetAgent(h.operatorCtx(h.admin), &flotillav1.GetAgentRequest{AgentId: agent.id})
	a := got.GetAgent()
	if a.GetState() != flotillav1.AgentState_AGENT_STATE_CONNECTED || a.GetVersion() != "v-test" || a.GetLabels()["env"] != "staging" ||
		!a.GetLastHeartbeat().GetApp().GetHealthy() || a.GetCertificateExpiresAt() == nil {
		t.Errorf("GetAgent = %v", a)
	}
	// On PostgreSQL the fleet's series come from the fleet lease's holder:
	// this lone replica, once it has taken the lease (at start, or again
	// after a renewal a loaded machine delayed).
	wantSeries := []string{
		`flotilla_agents{state="connected"} 1`,
		`flotilla_agent_cpu_percent{agent="` + agent.id + `",env="staging",role="web"} 37.5`,
		`flotilla_agent_app_healthy{agent="` + agent.id + `",env="staging",role="web"} 1`,
		`flotilla_agent_disk_percent{agent="` + agent.id + `",env="staging",path="/",role="web"} 55`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Register",grpc_service="flotilla.v1.AgentService",grpc_type="unary"} 1`,
	}
	var metrics string
	eventually(t, 10*time.Second, "the agent's series on /metrics", func() bool {
		metrics = h.scrape()
		for _, want := range wantSeries {
			if !strings.Contains(metrics, want) {
				return false
			}
		}
		return true
	})

	// The agent goes away: disconnected at once, lost after agent_lost_after.
	cancel()
	eventually(t, 2*time.Second, "the agent to be disconnected", func() bool {
		return h.agentState(agent.id) == flotillav1.AgentState_AGENT_STATE_DISCONNECTED
	})
	eventually(t, 15*time.Second, "the agent to be lost", func() bool {
		return h.agentState(agent.id) == flotillav1.AgentState_AGENT_STATE_LOST
	})
	eventually(t, 10*time.Second, "the lost agent's series on /metrics", func() bool {
		metrics = h.scrape()
		return strings.Contains(metrics, `flotilla_agents{state="lost"} 1`) &&
			strings.Contains(metrics, `flotilla_agent_up{agent="`+agent.id+`",env="staging",role="web"} 0`)
	})
	if strings.Contains(metrics, "flotilla_agent_cpu_percent{") {
		t.Error("/metrics still exports CPU for a lost agent")
	}
	// The agents' streams are counted by how they end, not message by
	// message (see notAgentStream).
	if !strings.Contains(metrics, `flotilla_agent_streams_ended_total{grpc_code="Canceled"} 1`) {
		t.Error("/metrics lacks the stream the agent cancelled in flotilla_agent_streams_ended_total")
	}
	if !strings.Contains(metrics, "flotilla_heartbeats_received_total 1") {
		t.Error("/metrics does not count the heartbeat")
	}
	if strings.Contains(metrics, `grpc_method="Connect"`) {
		t.Error("/metrics has per-message gRPC series for the agents' streams")
	}

	// The agent comes back on a new stream.
	stream2, _ := h.connect(agent)
	if err := stream2.Send(hello("", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := stream2.Recv(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the agent to reconnect", func() bool {
		return h.agentState(agent.id) == flotillav1.AgentState_AGENT_STATE_CONNECTED
	})
}

func TestHalfOpenStreamIsLost(t *testing.T) {
	h := start(t, lostAfter(time.Second))
	agent, _, err := h.register(h.joinToken(&flotillav1.CreateJoinTokenRequest{}), "web-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := h.connect(agent)
	if err := stream.Send(hello(agent.id, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	// The stream stays open but no heartbeat comes: the agent is lost and
	// the control plane closes the stream.
	eventually(t, 3*time.Second, "the silent agent to be lost", func() bool {
		return h.agentState(agent.id) == flotillav1.AgentState_AGENT_STATE_LOST
	})
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream ended with %v, want Unavailable", err)
	}
}

func TestRegisterRefusals(t *testing.T) {
	h := start(t)
	once := h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 1})
	if _, _, err := h.register(once, "web-1", nil); err != nil {
		t.Fatalf("first use: %v", err)
	}
	expired := h.joinToken(&flotillav1.CreateJoinTokenRequest{Ttl: durationpb.New(time.Millisecond)})
	time.Sleep(5 * time.Millisecond)

	tests := []struct {
		name, token, hostname string
		labels                map[string]string
		code                  codes.Code
		msg                   string
	}{
		{"used up", once, "web-2", nil, codes.Unauthenticated, "invalid, expired, revoked or used up"},
		{"expired", expired, "web-2", nil, codes.Unauthenticated, "invalid, expired, revoked or used up"},
		{"wrong", "fjt_notatoken", "web-2", nil, codes.Unauthenticated, "invalid, expired, revoked or used up"},
		{"missing", "", "web-2", nil, codes.InvalidArgument, "join_token"},
		{"bad hostname", once, "web;rm -rf /", nil, codes.InvalidArgument, "hostname"},
		{"bad label", once, "web-2", map[string]string{"env": "$(id)"}, codes.InvalidArgument, "labels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := h.register(tt.token, tt.hostname, tt.labels)
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.code, tt.msg)
			}
		})
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	badCSRs := []struct {
		name string
		csr  []byte
		msg  string
	}{
		{"not a csr", []byte("not a csr"), "csr: not a well-formed PKCS#10 certificate signing request"},
		{"a certificate instead", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rsaCSR}), `csr: a PEM block of type "CERTIFICATE"; send a CERTIFICATE REQUEST block`},
		{"an RSA key", rsaCSR, "csr: an RSA key; use an ECDSA P-256"},
	}
	for _, tt := range badCSRs {
		t.Run("bad csr: "+tt.name, func(t *testing.T) {
			client := flotillav1.NewAgentServiceClient(h.dial(h.serverTLS()))
			_, err := client.Register(context.Background(), &flotillav1.RegisterRequest{JoinToken: once, Csr: tt.csr, Hostname: "x"})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want InvalidArgument saying %q", err, tt.msg)
			}
			for _, leak := range []string{"x509", "asn1", "pem:", "crypto/", "*rsa."} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("err = %v exposes %q", err, leak)
				}
			}
		})
	}
}

func TestConnectRefusals(t *testing.T) {
	h := start(t)
	agent, _, err := h.register(h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 2}), "web-1", nil)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("no client certificate", func(t *testing.T) {
		stream, err := flotillav1.NewAgentServiceClient(h.dial(h.serverTLS())).Connect(context.Background())
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("err = %v, want Unauthenticated", err)
		}
	})

	t.Run("certificate from another CA", func(t *testing.T) {
		rogue, _, err := pki.NewCA("rogue", time.Hour, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		_, certPEM, err := rogue.SignAgent(newCSR(t, agent.key), agent.id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(agent.key)
		pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
		if err != nil {
			t.Fatal(err)
		}
		cfg := h.serverTLS()
		cfg.Certificates = []tls.Certificate{pair}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := flotillav1.NewAgentServiceClient(h.dial(cfg)).Connect(ctx)
		if err == nil {
			_, err = stream.Recv()
		}
		if err == nil || status.Code(err) == codes.OK {
			t.Fatal("a certificate from another CA was accepted")
		}
		if h.agentState(agent.id) == flotillav1.AgentState_AGENT_STATE_CONNECTED {
			t.Fatal("the impersonated agent shows as connected")
		}
	})

	t.Run("hello claims another agent", func(t *testing.T) {
		stream, _ := h.connect(agent)
		if err := stream.Send(hello("someone-else", nil)); err != nil {
			t.Fatal(err)
		}
		_, err := stream.Recv()
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "does not match the client certificate") {
			t.Fatalf("err = %v, want PermissionDenied", err)
		}
	})

	t.Run("first message not a hello", func(t *testing.T) {
		stream, _ := h.connect(agent)
		if err := stream.Send(heartbeat(1, true)); err != nil {
			t.Fatal(err)
		}
		_, err := stream.Recv()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "hello") {
			t.Fatalf("err = %v, want InvalidArgument about the hello", err)
		}
	})

	t.Run("newer stream replaces older", func(t *testing.T) {
		old, _ := h.connect(agent)
		if err := old.Send(hello(agent.id, nil)); err != nil {
			t.Fatal(err)
		}
		if _, err := old.Recv(); err != nil {
			t.Fatal(err)
		}
		newer, _ := h.connect(agent)
		if err := newer.Send(hello(agent.id, nil)); err != nil {
			t.Fatal(err)
		}
		if _, err := newer.Recv(); err != nil {
			t.Fatal(err)
		}
		if _, err := old.Recv(); status.Code(err) != codes.Aborted {
			t.Fatalf("old stream ended with %v, want Aborted", err)
		}
		if h.agentState(agent.id) != flotillav1.AgentState_AGENT_STATE_CONNECTED {
			t.Fatal("agent not connected on its newer stream")
		}
	})
}

func TestOperatorAPI(t *testing.T) {
	h := start(t)
	token := h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 10})
	for i, role := range []string{"web", "web", "db"} {
		if _, _, err := h.register(token, "host-"+string(rune('a'+i)), map[string]string{"role": role, "env": "prod"}); err != nil {
			t.Fatal(err)
		}
	}
	fc := h.fleet()
	ctx := h.operatorCtx(h.admin)

	t.Run("credentials", func(t *testing.T) {
		if _, err := fc.ListAgents(context.Background(), &flotillav1.ListAgentsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("no token: %v, want Unauthenticated", err)
		}
		if _, err := fc.ListAgents(h.operatorCtx("fat_wrong"), &flotillav1.ListAgentsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("wrong token: %v, want Unauthenticated", err)
		}
	})

	t.Run("selector and paging", func(t *testing.T) {
		resp, err := fc.ListAgents(ctx, &flotillav1.ListAgentsRequest{Selector: "role=web", PageSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetAgents()) != 1 || resp.GetTotalSize() != 2 || resp.GetNextPageToken() == "" {
			t.Fatalf("page 1 = %v", resp)
		}
		resp2, err := fc.ListAgents(ctx, &flotillav1.ListAgentsRequest{Selector: "role=web", PageSize: 1, PageToken: resp.GetNextPageToken()})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp2.GetAgents()) != 1 || resp2.GetNextPageToken() != "" || resp2.GetAgents()[0].GetId() == resp.GetAgents()[0].GetId() {
			t.Fatalf("page 2 = %v", resp2)
		}
		all, err := fc.ListAgents(ctx, &flotillav1.ListAgentsRequest{States: []flotillav1.AgentState{flotillav1.AgentState_AGENT_STATE_DISCONNECTED}})
		if err != nil || len(all.GetAgents()) != 3 {
			t.Fatalf("disconnected agents = %v, %v; want all 3 (never connected)", all, err)
		}
	})

	bad := []struct {
		name  string
		call  func() error
		field string
		code  codes.Code
	}{
		{"bad selector", func() error {
			_, err := fc.ListAgents(ctx, &flotillav1.ListAgentsRequest{Selector: "role in web"})
			return err
		}, "selector", codes.InvalidArgument},
		{"negative page size", func() error {
			_, err := fc.ListAgents(ctx, &flotillav1.ListAgentsRequest{PageSize: -1})
			return err
		}, "page_size", codes.InvalidArgument},
		{"huge page size", func() error {
			_, err := fc.ListAgents(ctx, &flotillav1.ListAgentsRequest{PageSize: 5000})
			return err
		}, "page_size", codes.InvalidArgument},
		{"bad page token", func() error {
			_, err := fc.ListAgents(ctx, &flotillav1.ListAgentsRequest{PageToken: "!!"})
			return err
		}, "page_token", codes.InvalidArgument},
		{"unknown state", func() error {
			_, err := fc.ListAgents(ctx, &flotillav1.ListAgentsRequest{States: []flotillav1.AgentState{42}})
			return err
		}, "states", codes.InvalidArgument},
		{"missing agent id", func() error {
			_, err := fc.GetAgent(ctx, &flotillav1.GetAgentRequest{})
			return err
		}, "agent_id", codes.InvalidArgument},
		{"unknown agent", func() error {
			_, err := fc.GetAgent(ctx, &flotillav1.GetAgentRequest{AgentId: "nope-123456"})
			return err
		}, "nope-123456", codes.NotFound},
		{"ttl too long", func() error {
			_, err := fc.CreateJoinToken(ctx, &flotillav1.CreateJoinTokenRequest{Ttl: durationpb.New(365 * 24 * time.Hour)})
			return err
		}, "ttl", codes.InvalidArgument},
		{"negative ttl", func() error {
			_, err := fc.CreateJoinToken(ctx, &flotillav1.CreateJoinTokenRequest{Ttl: durationpb.New(-time.Second)})
			return err
		}, "ttl", codes.InvalidArgument},
		{"negative uses", func() error {
			_, err := fc.CreateJoinToken(ctx, &flotillav1.CreateJoinTokenRequest{MaxUses: -1})
			return err
		}, "max_uses", codes.InvalidArgument},
		{"bad pinned label", func() error {
			_, err := fc.CreateJoinToken(ctx, &flotillav1.CreateJoinTokenRequest{Labels: map[string]string{"a b": "c"}})
			return err
		}, "labels", codes.InvalidArgument},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want %v naming %q", err, tt.code, tt.field)
			}
		})
	}

	t.Run("join token response", func(t *testing.T) {
		resp, err := fc.CreateJoinToken(ctx, &flotillav1.CreateJoinTokenRequest{Description: "web fleet"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(resp.GetToken(), auth.JoinTokenPrefix) || resp.GetMaxUses() != 1 || resp.GetCaCertSha256() != h.srv.CA().Fingerprint() {
			t.Fatalf("response = %v", resp)
		}
	})
}

func TestHealthzAndRestart(t *testing.T) {
	dir := t.TempDir()
	h := start(t, servertest.WithDataDir(dir))
	resp, err := http.Get("http://" + h.httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var body server.Health
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || body.Status != "healthy" || body.Database != "ok" || body.Cache != "ok" || body.Timestamp == "" {
		t.Fatalf("/healthz = %d %+v", resp.StatusCode, body)
	}
	agent, _, err := h.register(h.joinToken(&flotillav1.CreateJoinTokenRequest{}), "web-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := h.connect(agent)
	if err := stream.Send(hello(agent.id, map[string]string{"role": "web"})); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(heartbeat(12, true)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "heartbeat", func() bool {
		r, err := h.fleet().GetAgent(h.operatorCtx(h.admin), &flotillav1.GetAgentRequest{AgentId: agent.id})
		return err == nil && r.GetAgent().GetLastHeartbeat() != nil
	})
	caBefore := h.srv.CA().Fingerprint()

	// A restarted control plane keeps its CA, admin token and agents; the
	// agent that was connected is now waiting to reconnect.
	h2 := h.restart()
	if h2.srv.CA().Fingerprint() != caBefore {
		t.Fatal("CA changed across a restart")
	}
	if h2.admin != h.admin || h2.srv.AdminTokenPath != "" {
		t.Fatal("admin token recreated across a restart")
	}
	r, err := h2.fleet().GetAgent(h2.operatorCtx(h2.admin), &flotillav1.GetAgentRequest{AgentId: agent.id})
	if err != nil {
		t.Fatal(err)
	}
	a := r.GetAgent()
	if a.GetState() != flotillav1.AgentState_AGENT_STATE_DISCONNECTED || a.GetLastHeartbeat().GetHost().GetCpuPercent() != 12 || a.GetLabels()["role"] != "web" {
		t.Fatalf("after restart: %v", a)
	}
	private := []string{"ca.key", "server.key", auth.AdminTokenFile}
	if servertest.Driver() == config.DriverSQLite {
		private = append(private, "flotilla.db")
	}
	for _, f := range private {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group/other access", f, info.Mode().Perm())
		}
	}
}
