package pki_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/pki"
)

// t0 is whole seconds: certificates store times to the second.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

func newCA(t *testing.T, validity time.Duration) (*pki.CA, []byte) {
	t.Helper()
	ca, keyPEM, err := pki.NewCA("Flotilla CA", validity, fixed(t0))
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca, keyPEM
}

func newKey(t *testing.T, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// csrDER makes a CSR that asks for much more than it will get.
func csrDER(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	evil, _ := url.Parse("spiffe://flotilla/agent/admin")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "tamper-me", Organization: []string{"Evil"}},
		DNSNames:       []string{"controlplane.example"},
		EmailAddresses: []string{"root@example.com"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.1")},
		URIs:           []*url.URL{evil},
	}, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return der
}

func csrPEM(t *testing.T, key crypto.Signer) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER(t, key)})
}

func pemCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			t.Fatalf("PEM block %q in a certificate chain", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(b)) != 0 {
		t.Fatalf("trailing data after the PEM blocks: %q", b)
	}
	return certs
}

func TestNewCA(t *testing.T) {
	ca, keyPEM := newCA(t, pki.CAValidity)
	c := ca.Certificate()
	start := t0.Add(-5 * time.Minute)
	if !c.IsCA || !c.BasicConstraintsValid || !c.MaxPathLenZero || c.MaxPathLen != 0 {
		t.Errorf("CA constraints: IsCA %v valid %v MaxPathLenZero %v MaxPathLen %d", c.IsCA, c.BasicConstraintsValid, c.MaxPathLenZero, c.MaxPathLen)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA KeyUsage %b lacks CertSign", c.KeyUsage)
	}
	if c.Subject.CommonName != "Flotilla CA" || !c.NotBefore.Equal(start) || !c.NotAfter.Equal(start.Add(pki.CAValidity)) {
		t.Errorf("CA %q valid %s..%s, want Flotilla CA %s..%s", c.Subject.CommonName, c.NotBefore, c.NotAfter, start, start.Add(pki.CAValidity))
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("CA key is %T, want ECDSA", c.PublicKey)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Errorf("key PEM is not a PRIVATE KEY block")
	}
	sum := sha256.Sum256(c.Raw)
	if fp := ca.Fingerprint(); fp != hex.EncodeToString(sum[:]) || len(fp) != 64 {
		t.Errorf("Fingerprint = %s, want the hex SHA-256 of the DER", fp)
	}
	if got := pemCerts(t, ca.CertificatePEM()); len(got) != 1 || !got[0].Equal(c) {
		t.Errorf("CertificatePEM does not hold exactly the CA certificate")
	}
	other, _ := newCA(t, pki.CAValidity)
	if other.Fingerprint() == ca.Fingerprint() {
		t.Error("two CAs share a fingerprint")
	}
}

func TestLoadCA(t *testing.T) {
	ca, keyPEM := newCA(t, pki.CAValidity)
	other, otherKey := newCA(t, pki.CAValidity)
	chain, leafKey, err := ca.IssueServer([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	sec1PEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})

	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		wantErr string
	}{
		{name: "round trip", cert: ca.CertificatePEM(), key: keyPEM},
		{name: "SEC 1 key", cert: ca.CertificatePEM(), key: sec1PEM},
		{name: "key of another CA", cert: ca.CertificatePEM(), key: otherKey, wantErr: "does not match"},
		{name: "certificate of another CA", cert: other.CertificatePEM(), key: keyPEM, wantErr: "does not match"},
		{name: "not a CA", cert: chain, key: leafKey, wantErr: "not a CA"},
		{name: "garbage certificate", cert: []byte("garbage"), key: keyPEM, wantErr: "CA certificate"},
		{name: "key where the certificate belongs", cert: keyPEM, key: keyPEM, wantErr: "CA certificate"},
		{name: "garbage key", cert: ca.CertificatePEM(), key: []byte("garbage"), wantErr: "CA key"},
		{name: "PKCS#1 RSA key", cert: ca.CertificatePEM(), key: rsaPEM, wantErr: "CA key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loaded, err := pki.LoadCA(tt.cert, tt.key, fixed(t0))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadCA = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadCA: %v", err)
			}
			if loaded.Fingerprint() != ca.Fingerprint() || !bytes.Equal(loaded.CertificatePEM(), ca.CertificatePEM()) {
				t.Errorf("loaded CA differs from the generated one")
			}
			// The loaded CA signs certificates the original's pool accepts.
			cert, _, err := loaded.SignAgent(csrPEM(t, newKey(t, elliptic.P256())), "ag-1", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("certificate from the loaded CA does not verify: %v", err)
			}
		})
	}
}

func TestIssueServer(t *testing.T) {
	ca, _ := newCA(t, pki.CAValidity)
	chainPEM, keyPEM, err := ca.IssueServer([]string{"localhost", "127.0.0.1", "::1", "", "cp.example"}, pki.ServerValidity)
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	chain := pemCerts(t, chainPEM)
	if len(chain) != 2 {
		t.Fatalf("chain has %d certificates, want [leaf, CA]", len(chain))
	}
	leaf := chain[0]
	if !chain[1].Equal(ca.Certificate()) {
		t.Errorf("chain[1] is not the CA certificate")
	}
	if leaf.IsCA {
		t.Errorf("server certificate is a CA")
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage = %v, want [ServerAuth]", leaf.ExtKeyUsage)
	}
	if !slices.Equal(leaf.DNSNames, []string{"localhost", "cp.example"}) {
		t.Errorf("DNSNames = %v, want [localhost cp.example] (empty host skipped)", leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v, want [127.0.0.1 ::1]", leaf.IPAddresses)
	}
	if len(leaf.URIs) != 0 {
		t.Errorf("server certificate carries URIs %v", leaf.URIs)
	}
	start := t0.Add(-5 * time.Minute)
	if !leaf.NotBefore.Equal(start) || !leaf.NotAfter.Equal(start.Add(pki.ServerValidity)) {
		t.Errorf("valid %s..%s, want %s..%s", leaf.NotBefore, leaf.NotAfter, start, start.Add(pki.ServerValidity))
	}
	if _, err := pki.AgentIDFromCertificate(leaf); err == nil {
		t.Errorf("server certificate carries an agent identity")
	}

	tests := []struct {
		host  string
		usage x509.ExtKeyUsage
		ok    bool
	}{
		{"localhost", x509.ExtKeyUsageServerAuth, true},
		{"127.0.0.1", x509.ExtKeyUsageServerAuth, true},
		{"::1", x509.ExtKeyUsageServerAuth, true},
		{"cp.example", x509.ExtKeyUsageServerAuth, true},
		{"other.example", x509.ExtKeyUsageServerAuth, false},
		{"10.0.0.1", x509.ExtKeyUsageServerAuth, false},
		{"localhost", x509.ExtKeyUsageClientAuth, false},
	}
	for _, tt := range tests {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: tt.host, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{tt.usage}})
		if (err == nil) != tt.ok {
			t.Errorf("Verify(%s, usage %v) = %v, want ok %v", tt.host, tt.usage, err, tt.ok)
		}
	}
	pair, err := tls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	if len(pair.Certificate) != 2 {
		t.Errorf("key pair has %d certificates, want 2", len(pair.Certificate))
	}

	// Never outlives the CA.
	short, _ := newCA(t, 24*time.Hour)
	chainPEM, _, err = short.IssueServer([]string{"localhost"}, pki.ServerValidity)
	if err != nil {
		t.Fatal(err)
	}
	if leaf := pemCerts(t, chainPEM)[0]; !leaf.NotAfter.Equal(short.Certificate().NotAfter) {
		t.Errorf("server NotAfter %s, want the CA's %s", leaf.NotAfter, short.Certificate().NotAfter)
	}
}

func TestSignAgent(t *testing.T) {
	ca, _ := newCA(t, 48*time.Hour)
	start := t0.Add(-5 * time.Minute)
	tests := []struct {
		name         string
		curve        elliptic.Curve
		der          bool
		validity     time.Duration
		wantNotAfter time.Time
	}{
		{name: "P-256 PEM", curve: elliptic.P256(), validity: time.Hour, wantNotAfter: start.Add(time.Hour)},
		{name: "P-384 DER", curve: elliptic.P384(), der: true, validity: 24 * time.Hour, wantNotAfter: start.Add(24 * time.Hour)},
		{name: "exactly the CA's lifetime", curve: elliptic.P256(), validity: 48 * time.Hour, wantNotAfter: ca.Certificate().NotAfter},
		{name: "longer than the CA", curve: elliptic.P256(), validity: 365 * 24 * time.Hour, wantNotAfter: ca.Certificate().NotAfter},
	}
	serials := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := newKey(t, tt.curve)
			csr := csrPEM(t, key)
			if tt.der {
				csr = csrDER(t, key)
			}
			cert, certPEM, err := ca.SignAgent(csr, "ag-7k2m9q4x", tt.validity)
			if err != nil {
				t.Fatalf("SignAgent: %v", err)
			}
			if got := pemCerts(t, certPEM); len(got) != 1 || !got[0].Equal(cert) {
				t.Fatalf("returned PEM does not hold the returned certificate")
			}
			if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://flotilla/agent/ag-7k2m9q4x" {
				t.Errorf("URIs = %v, want exactly [spiffe://flotilla/agent/ag-7k2m9q4x]", cert.URIs)
			}
			if id, err := pki.AgentIDFromCertificate(cert); err != nil || id != "ag-7k2m9q4x" {
				t.Errorf("AgentIDFromCertificate = %q, %v", id, err)
			}
			// Everything the CSR asked for besides its key is ignored.
			if cert.Subject.CommonName != "ag-7k2m9q4x" || !slices.Equal(cert.Subject.Organization, []string{"Flotilla"}) {
				t.Errorf("subject = %v, want CN=ag-7k2m9q4x O=Flotilla", cert.Subject)
			}
			if len(cert.DNSNames)+len(cert.EmailAddresses)+len(cert.IPAddresses) != 0 {
				t.Errorf("CSR SANs copied: DNS %v email %v IP %v", cert.DNSNames, cert.EmailAddresses, cert.IPAddresses)
			}
			if !key.PublicKey.Equal(cert.PublicKey) {
				t.Errorf("certificate is not for the CSR's key")
			}
			if cert.IsCA {
				t.Errorf("agent certificate is a CA")
			}
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("ExtKeyUsage = %v, want [ClientAuth]", cert.ExtKeyUsage)
			}
			if !cert.NotBefore.Equal(start) || !cert.NotAfter.Equal(tt.wantNotAfter) {
				t.Errorf("valid %s..%s, want %s..%s", cert.NotBefore, cert.NotAfter, start, tt.wantNotAfter)
			}
			if cert.NotAfter.After(ca.Certificate().NotAfter) {
				t.Errorf("agent certificate outlives the CA")
			}
			opts := x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
			if _, err := cert.Verify(opts); err != nil {
				t.Errorf("agent certificate does not verify for client auth: %v", err)
			}
			opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			if _, err := cert.Verify(opts); err == nil {
				t.Errorf("agent certificate verifies for server auth")
			}
			serial := pki.SerialHex(cert)
			if serial != cert.SerialNumber.Text(16) || cert.SerialNumber.Sign() <= 0 || serials[serial] {
				t.Errorf("serial %s: want positive, unique, hex", serial)
			}
			serials[serial] = true
		})
	}
}

func TestSignAgentRejectsBadCSR(t *testing.T) {
	ca, _ := newCA(t, pki.CAValidity)
	if _, _, err := ca.SignAgent([]byte("garbage"), "ag-1", time.Hour); err == nil || !strings.Contains(err.Error(), "csr") {
		t.Errorf("SignAgent(garbage) = %v, want a csr error", err)
	}
}

func TestParseCSR(t *testing.T) {
	p256 := csrDER(t, newKey(t, elliptic.P256()))
	tampered := bytes.Replace(p256, []byte("tamper-me"), []byte("tamper-mf"), 1)
	if bytes.Equal(tampered, p256) {
		t.Fatal("test CSR does not contain the subject to tamper with")
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }

	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{name: "P-256 PEM", in: block("CERTIFICATE REQUEST", p256)},
		{name: "legacy PEM type", in: block("NEW CERTIFICATE REQUEST", p256)},
		{name: "P-256 DER", in: p256},
		{name: "P-384", in: csrDER(t, newKey(t, elliptic.P384()))},
		{name: "empty", in: nil, wantErr: "empty; send a PKCS#10"},
		{name: "garbage", in: []byte("this is not a certificate request"), wantErr: "not a well-formed PKCS#10 certificate signing request"},
		{name: "truncated DER", in: p256[:len(p256)/2], wantErr: "not a well-formed PKCS#10"},
		{name: "truncated PEM", in: block("CERTIFICATE REQUEST", p256[:len(p256)/2]), wantErr: "not a well-formed PKCS#10"},
		{name: "certificate PEM type", in: block("CERTIFICATE", p256), wantErr: `a PEM block of type "CERTIFICATE"; send a CERTIFICATE REQUEST block`},
		{name: "private key PEM type", in: block("PRIVATE KEY", p256), wantErr: `type "PRIVATE KEY"`},
		{name: "long PEM type", in: block(strings.Repeat("X", 500), p256), wantErr: strings.Repeat("X", 64) + "…\""},
		{name: "tampered subject", in: tampered, wantErr: "signature does not verify with the public key it carries"},
		{name: "tampered subject PEM", in: block("CERTIFICATE REQUEST", tampered), wantErr: "signature does not verify"},
		{name: "RSA key", in: csrDER(t, rsaKey), wantErr: "an RSA key; use an ECDSA P-256"},
		{name: "Ed25519 key", in: csrDER(t, edKey), wantErr: "an Ed25519 key; use an ECDSA P-256"},
		{name: "P-521 key", in: csrDER(t, newKey(t, elliptic.P521())), wantErr: "an ECDSA key on curve P-521; use P-256 or P-384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := pki.ParseCSR(tt.in)
			if tt.wantErr == "" {
				if err != nil || csr == nil {
					t.Fatalf("ParseCSR = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCSR = %v, want an error containing %q", err, tt.wantErr)
			}
			// The reason is the user's, never a library's words.
			var ce *pki.CSRError
			if !errors.As(err, &ce) {
				t.Errorf("ParseCSR error %T is not a *pki.CSRError", err)
			}
			for _, leak := range []string{"x509:", "asn1:", "pem:", "crypto/", "*rsa.", "ed25519.PublicKey", "ecdsa.PublicKey"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("ParseCSR error %q exposes %q", err, leak)
				}
			}
		})
	}
}

func TestAgentURI(t *testing.T) {
	if got := pki.AgentURI("ag-1").String(); got != "spiffe://flotilla/agent/ag-1" {
		t.Errorf("AgentURI = %s", got)
	}
}

func TestAgentIDFromCertificate(t *testing.T) {
	tests := []struct {
		name    string
		uris    []string
		want    string
		wantErr bool
	}{
		{name: "agent identity", uris: []string{"spiffe://flotilla/agent/ag-1"}, want: "ag-1"},
		{name: "identity after another URI", uris: []string{"https://example.com/x", "spiffe://flotilla/agent/ag-2"}, want: "ag-2"},
		{name: "no URI", uris: nil, wantErr: true},
		{name: "another trust domain", uris: []string{"spiffe://other/agent/ag-1"}, wantErr: true},
		{name: "trust domain with a port", uris: []string{"spiffe://flotilla:443/agent/ag-1"}, wantErr: true},
		{name: "nested path", uris: []string{"spiffe://flotilla/agent/ag-1/extra"}, wantErr: true},
		{name: "encoded slash", uris: []string{"spiffe://flotilla/agent/ag-1%2Fextra"}, wantErr: true},
		{name: "empty ID", uris: []string{"spiffe://flotilla/agent/"}, wantErr: true},
		{name: "no agent path", uris: []string{"spiffe://flotilla/agent"}, wantErr: true},
		{name: "other path", uris: []string{"spiffe://flotilla/server/ag-1"}, wantErr: true},
		{name: "path prefix lookalike", uris: []string{"spiffe://flotilla/agents/ag-1"}, wantErr: true},
		{name: "other scheme", uris: []string{"https://flotilla/agent/ag-1"}, wantErr: true},
		{name: "operator identity", uris: []string{"spiffe://flotilla/operator/alice", "spiffe://flotilla/role/admin"}, wantErr: true},
		{name: "agent and operator identity", uris: []string{"spiffe://flotilla/agent/ag-1", "spiffe://flotilla/operator/alice"}, wantErr: true},
		{name: "agent identity with a role", uris: []string{"spiffe://flotilla/agent/ag-1", "spiffe://flotilla/role/admin"}, wantErr: true},
		{name: "two agent identities", uris: []string{"spiffe://flotilla/agent/ag-1", "spiffe://flotilla/agent/ag-2"}, wantErr: true},
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
			id, err := pki.AgentIDFromCertificate(cert)
			if tt.wantErr {
				if err == nil || id != "" {
					t.Errorf("AgentIDFromCertificate = %q, %v; want an error", id, err)
				}
				return
			}
			if err != nil || id != tt.want {
				t.Errorf("AgentIDFromCertificate = %q, %v; want %q", id, err, tt.want)
			}
		})
	}
}

func TestParseKeyPEM(t *testing.T) {
	key := newKey(t, elliptic.P256())
	enc, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pki.ParseKeyPEM(enc)
	if err != nil {
		t.Fatalf("ParseKeyPEM(EncodeKey(k)): %v", err)
	}
	if !key.Equal(got) {
		t.Errorf("key changed in the round trip")
	}
	for _, bad := range [][]byte{nil, []byte("garbage"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})} {
		if _, err := pki.ParseKeyPEM(bad); err == nil {
			t.Errorf("ParseKeyPEM(%q) succeeded", bad)
		}
	}
}
