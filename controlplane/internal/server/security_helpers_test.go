package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/config"
)

// startServerCustom is startServerWith with a logger of the test's choice
// and server options.
func startServerCustom(t *testing.T, dataDir string, adjust func(*config.Config), log *zap.Logger, opts ...Option) *harness {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.Store.Path = filepath.Join(dataDir, "flotilla.db")
	cfg.AgentLostAfter = config.Duration(30 * time.Second)
	cfg.ShutdownTimeout = config.Duration(2 * time.Second)
	if adjust != nil {
		adjust(&cfg)
	}
	srv, err := New(context.Background(), cfg, log, "test", opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	admin, err := os.ReadFile(filepath.Join(dataDir, auth.AdminTokenFile))
	if err != nil {
		t.Fatalf("admin token: %v", err)
	}
	lis := bufconn.Listen(1 << 20)
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, srv: srv, lis: lis, httpAddr: httpLis.Addr().String(), admin: strings.TrimSpace(string(admin)), cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- srv.Run(ctx, lis, httpLis) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) adminClient() flotillav1.AdminServiceClient {
	return flotillav1.NewAdminServiceClient(h.dial(h.serverTLS()))
}

// withCert is the server TLS configuration with a client certificate.
func (h *harness) withCert(cert tls.Certificate) *tls.Config {
	cfg := h.serverTLS()
	cfg.Certificates = []tls.Certificate{cert}
	return cfg
}

// keyPair combines a certificate (PEM) with its key.
func keyPair(t *testing.T, certPEM []byte, key *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// operatorCert has the admin issue an operator certificate for a fresh key.
func (h *harness) operatorCert(name string, role flotillav1.Role) tls.Certificate {
	h.t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	resp, err := h.adminClient().IssueOperatorCertificate(h.operatorCtx(h.admin), &flotillav1.IssueOperatorCertificateRequest{
		Name: name, Role: role, Csr: newCSR(h.t, key),
	})
	if err != nil {
		h.t.Fatalf("IssueOperatorCertificate(%s): %v", name, err)
	}
	return keyPair(h.t, resp.GetCertificatePem(), key)
}

// renew renews a's certificate over a connection that presents its current
// one, and returns the new pair.
func (h *harness) renew(a *testAgent) (tls.Certificate, error) {
	h.t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	client := flotillav1.NewAgentServiceClient(h.dial(h.withCert(a.cert)))
	resp, err := client.RenewCertificate(context.Background(), &flotillav1.RenewCertificateRequest{Csr: newCSR(h.t, key)})
	if err != nil {
		return tls.Certificate{}, err
	}
	return keyPair(h.t, resp.GetCertificatePem(), key), nil
}

// openStream connects with cert, sends a hello and returns the stream and
// the answer to the hello (a welcome or the error).
func (h *harness) openStream(cert tls.Certificate, id string) (grpc.BidiStreamingClient[flotillav1.ConnectRequest, flotillav1.ConnectResponse], error) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	stream, err := flotillav1.NewAgentServiceClient(h.dial(h.withCert(cert))).Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(hello(id, nil)); err != nil {
		// The server may have refused the stream already; Recv says why.
		_, rerr := stream.Recv()
		return nil, rerr
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if first.GetWelcome().GetAgentId() != id {
		h.t.Fatalf("first message = %v, want a welcome for %s", first, id)
	}
	return stream, nil
}

// recvErr waits for the stream to end and returns why.
func recvErr(t *testing.T, stream grpc.BidiStreamingClient[flotillav1.ConnectRequest, flotillav1.ConnectResponse]) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				errc <- err
				return
			}
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-time.After(waitFor):
		t.Fatal("the stream did not end")
		return nil
	}
}
