package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"google.golang.org/grpc"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

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
