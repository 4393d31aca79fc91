package pki_test

import (
	"crypto/elliptic"
	"crypto/x509"
	"net/url"
	"slices"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/pki"
)

func TestSignOperator(t *testing.T) {
	ca, _ := newCA(t, 48*time.Hour)
	key := newKey(t, elliptic.P256())
	cert, certPEM, err := ca.SignOperator(csrPEM(t, key), "alice@ops", "operator", time.Hour)
	if err != nil {
		t.Fatalf("SignOperator: %v", err)
	}
	if got := pemCerts(t, certPEM); len(got) != 1 || !got[0].Equal(cert) {
		t.Fatal("returned PEM does not hold the returned certificate")
	}
	var uris []string
	for _, u := range cert.URIs {
		uris = append(uris, u.String())
	}
	if want := []string{"spiffe://flotilla/operator/alice@ops", "spiffe://flotilla/role/operator"}; !slices.Equal(uris, want) {
		t.Errorf("URIs = %v, want %v", uris, want)
	}
	if cert.Subject.CommonName != "alice@ops" || !slices.Equal(cert.Subject.OrganizationalUnit, []string{"operator"}) {
		t.Errorf("subject = %v", cert.Subject)
	}
	if !cert.NotAfter.Equal(t0.Add(-5*time.Minute + time.Hour)) {
		t.Errorf("NotAfter = %s", cert.NotAfter)
	}
	opts := x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := cert.Verify(opts); err != nil {
		t.Errorf("operator certificate does not verify for client auth: %v", err)
	}
	name, role, err := pki.OperatorFromCertificate(cert)
	if err != nil || name != "alice@ops" || role != "operator" {
		t.Errorf("OperatorFromCertificate = %q, %q, %v", name, role, err)
	}
	if _, err := pki.AgentIDFromCertificate(cert); err == nil {
		t.Error("an operator certificate reads as an agent's")
	}

	for _, bad := range []struct{ name, role string }{{"", "admin"}, {"a/b", "admin"}, {"alice", ""}, {"alice", "ad/min"}} {
		if _, _, err := ca.SignOperator(csrPEM(t, key), bad.name, bad.role, time.Hour); err == nil {
			t.Errorf("SignOperator(%q, %q) succeeded", bad.name, bad.role)
		}
	}
	if _, _, err := ca.SignOperator([]byte("nope"), "alice", "admin", time.Hour); err == nil {
		t.Error("SignOperator accepted a bad CSR")
	}
}

func TestOperatorFromCertificate(t *testing.T) {
	tests := []struct {
		name       string
		uris       []string
		wantName   string
		wantRole   string
		wantErrMsg bool
	}{
		{name: "operator", uris: []string{"spiffe://flotilla/operator/alice", "spiffe://flotilla/role/viewer"}, wantName: "alice", wantRole: "viewer"},
		{name: "role first", uris: []string{"spiffe://flotilla/role/admin", "spiffe://flotilla/operator/bob"}, wantName: "bob", wantRole: "admin"},
		{name: "agent certificate", uris: []string{"spiffe://flotilla/agent/ag-1"}, wantErrMsg: true},
		{name: "agent and operator", uris: []string{"spiffe://flotilla/agent/ag-1", "spiffe://flotilla/operator/alice", "spiffe://flotilla/role/admin"}, wantErrMsg: true},
		{name: "no role", uris: []string{"spiffe://flotilla/operator/alice"}, wantErrMsg: true},
		{name: "two roles", uris: []string{"spiffe://flotilla/operator/alice", "spiffe://flotilla/role/viewer", "spiffe://flotilla/role/admin"}, wantErrMsg: true},
		{name: "two operators", uris: []string{"spiffe://flotilla/operator/alice", "spiffe://flotilla/operator/bob", "spiffe://flotilla/role/admin"}, wantErrMsg: true},
		{name: "other trust domain", uris: []string{"spiffe://other/operator/alice", "spiffe://other/role/admin"}, wantErrMsg: true},
		{name: "nested name", uris: []string{"spiffe://flotilla/operator/alice/x", "spiffe://flotilla/role/admin"}, wantErrMsg: true},
		{name: "nothing", wantErrMsg: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := &x509.Certificate{}
			for _, s := range tt.uris {
				u, err := url.Parse(s)
				if err != nil {
					t.Fatal(err)
				}
				cert.URIs = append(cert.URIs, u)
			}
			name, role, err := pki.OperatorFromCertificate(cert)
			if tt.wantErrMsg {
				if err == nil {
					t.Fatalf("OperatorFromCertificate = %q, %q; want an error", name, role)
				}
				return
			}
			if err != nil || name != tt.wantName || role != tt.wantRole {
				t.Fatalf("OperatorFromCertificate = %q, %q, %v; want %q, %q", name, role, err, tt.wantName, tt.wantRole)
			}
		})
	}
}
