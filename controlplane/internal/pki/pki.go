package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

// TrustDomain is the SPIFFE-style trust domain of agent identities:
// an agent's certificate carries the URI SAN spiffe://flotilla/agent/<id>.
const TrustDomain = "flotilla"

// Identity URI paths: an agent's certificate carries
// spiffe://flotilla/agent/<id>; an operator's carries
// spiffe://flotilla/operator/<name> and spiffe://flotilla/role/<role>.
const (
	agentPathPrefix    = "/agent/"
	operatorPathPrefix = "/operator/"
	rolePathPrefix     = "/role/"
)

// CA signs the server's and the agents' certificates.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	now     func() time.Time
}

// NewCA generates a self-signed ECDSA P-256 CA valid for validity.
func NewCA(commonName string, validity time.Duration, now func() time.Time) (*CA, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	start := now().Add(-5 * time.Minute) // tolerate small clock skew
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Flotilla"}},
		NotBefore:             start,
		NotAfter:              start.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: self-sign CA: %w", err)
	}
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := LoadCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, now)
	return ca, keyPEM, err
}

// LoadCA parses a CA certificate and its private key (PEM).
func LoadCA(certPEM, keyPEM []byte, now func() time.Time) (*CA, error) {
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("pki: CA certificate: not a CA (basic constraints)")
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("pki: CA key does not match the CA certificate")
	}
	return &CA{cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), key: key, now: now}, nil
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertificatePEM returns the CA certificate, PEM.
func (ca *CA) CertificatePEM() []byte { return ca.certPEM }

// Fingerprint returns the hex SHA-256 of the CA certificate's DER, the value
// agents pin with control_plane.ca_sha256.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// IssueServer creates a key and a server certificate for the given DNS names
// and IP addresses. It returns the certificate chain [leaf, CA] and the key,
// both PEM, so that agents pinning the CA find it in the chain.
func (ca *CA) IssueServer(hosts []string, validity time.Duration) (chainPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate server key: %w", err)
	}
	tmpl, err := ca.template("flotilla-controlplane", validity)
	if err != nil {
		return nil, nil, err
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign server certificate: %w", err)
	}
	keyPEM, err = EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	chainPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.certPEM...)
	return chainPEM, keyPEM, nil
}

// SignAgent checks an agent's certificate signing request and issues a
// client certificate for agentID. Everything in the CSR except its public key
// is ignored: the control plane alone names the certificate.
func (ca *CA) SignAgent(csrBytes []byte, agentID string, validity time.Duration) (*x509.Certificate, []byte, error) {
	csr, err := ParseCSR(csrBytes)
	if err != nil {
		return nil, nil, err
	}
	tmpl, err := ca.template(agentID, validity)
	if err != nil {
		return nil, nil, err
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tmpl.URIs = []*url.URL{AgentURI(agentID)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign agent certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: parse issued certificate: %w", err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func (ca *CA) template(commonName string, validity time.Duration) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	start := ca.now().Add(-5 * time.Minute)
	end := start.Add(validity)
	if end.After(ca.cert.NotAfter) {
		end = ca.cert.NotAfter // never outlive the issuer
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"Flotilla"}},
		NotBefore:    start,
		NotAfter:     end,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}, nil
}

// AgentURI is the identity URI SAN of an agent's certificate.
func AgentURI(agentID string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: agentPathPrefix + agentID}
}

// AgentIDFromCertificate returns the agent ID carried by a verified client
// certificate, or an error when it carries no agent identity. A certificate
// that also carries an operator identity or role, or two agent identities,
// is refused: the CA never issues one, so it can only be a forgery or a
// mistake, and it must not be read as either kind.
func AgentIDFromCertificate(cert *x509.Certificate) (string, error) {
	ids := flotillaIdentities(cert)
	if len(ids.operators) > 0 || len(ids.roles) > 0 {
		return "", errors.New("certificate carries an operator identity, not an agent identity")
	}
	switch len(ids.agents) {
	case 0:
		return "", errors.New("certificate carries no agent identity")
	case 1:
		return ids.agents[0], nil
	default:
		return "", errors.New("certificate carries more than one agent identity")
	}
}

// identities are the Flotilla identity URIs of a certificate, by kind.
type identities struct {
	agents, operators, roles []string
}

// flotillaIdentities collects the spiffe://flotilla/<kind>/<value> URIs of
// cert. A URI of the trust domain with an unknown kind or an empty or
// nested value is ignored, as are other URIs.
func flotillaIdentities(cert *x509.Certificate) identities {
	var ids identities
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" || u.Host != TrustDomain {
			continue
		}
		for prefix, dst := range map[string]*[]string{agentPathPrefix: &ids.agents, operatorPathPrefix: &ids.operators, rolePathPrefix: &ids.roles} {
			if v, ok := strings.CutPrefix(u.Path, prefix); ok && v != "" && !strings.Contains(v, "/") {
				*dst = append(*dst, v)
			}
		}
	}
	return ids
}

// CSRError is a certificate signing request the CA refuses. Its Reason is
// written for whoever made the request — what is wrong with it and what to
// send instead — and never carries the text of a library's error.
type CSRError struct {
	Reason string
}

func (e *CSRError) Error() string { return "csr: " + e.Reason }

func csrErrorf(format string, args ...any) error {
	return &CSRError{Reason: fmt.Sprintf(format, args...)}
}

// maxQuotedPEMType bounds the PEM type repeated in an error.
const maxQuotedPEMType = 64

// ParseCSR parses a PEM or DER certificate signing request and checks its
// signature. Every error it returns is a *CSRError.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) == 0 {
		return nil, csrErrorf("empty; send a PKCS#10 certificate signing request, PEM or DER")
	}
	if block, _ := pem.Decode(b); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			typ := block.Type
			if len(typ) > maxQuotedPEMType {
				typ = typ[:maxQuotedPEMType] + "…"
			}
			return nil, csrErrorf("a PEM block of type %q; send a CERTIFICATE REQUEST block", typ)
		}
		b = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(b)
	if err != nil {
		return nil, csrErrorf("not a well-formed PKCS#10 certificate signing request (PEM CERTIFICATE REQUEST or DER); make it with the key the agent or operator will use")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, csrErrorf("its signature does not verify with the public key it carries: the request was altered or signed with another key")
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, csrErrorf("an ECDSA key on curve %s; use P-256 or P-384", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		return nil, csrErrorf("an RSA key; use an ECDSA P-256 (or P-384) key")
	case ed25519.PublicKey:
		return nil, csrErrorf("an Ed25519 key; use an ECDSA P-256 (or P-384) key")
	default:
		return nil, csrErrorf("a key of an unsupported kind; use an ECDSA P-256 (or P-384) key")
	}
	return csr, nil
}

// ParseCertificatePEM parses the first certificate of a PEM bundle.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// ParseKeyPEM parses a PKCS#8 or SEC 1 EC private key.
func ParseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key type %T cannot sign", k)
		}
		return s, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, want PRIVATE KEY", block.Type)
	}
}

// EncodeKey encodes a private key as PKCS#8 PEM.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// SerialHex formats a certificate serial number for storage and logs.
func SerialHex(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}
