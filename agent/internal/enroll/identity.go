package enroll

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// SPIFFEPrefix starts the URI SAN that names the agent in its certificate:
// spiffe://flotilla/agent/<agent ID>.
const SPIFFEPrefix = "spiffe://flotilla/agent/"

// ErrCertificateExpired means the agent's certificate has expired. An
// expired certificate cannot authenticate, not even to renew itself: the
// agent must register again, with a join token.
var ErrCertificateExpired = errors.New("certificate expired")

// Identity is a registered agent: its ID, its client certificate and key, and
// the CA bundle it trusts for the control plane. It is never modified:
// a renewal makes a new one.
type Identity struct {
	// AgentID is the ID the control plane gave the agent.
	AgentID string
	// Certificate is the client certificate chain with its key (Leaf is set).
	Certificate tls.Certificate
	// CAs holds the CA bundle from the registration.
	CAs *x509.CertPool
}

// NotAfter is when the client certificate expires.
func (id *Identity) NotAfter() time.Time { return id.Certificate.Leaf.NotAfter }

// NotBefore is when the client certificate became valid.
func (id *Identity) NotBefore() time.Time { return id.Certificate.Leaf.NotBefore }

// Serial is the client certificate's serial number, in hex as logs and
// openssl show it.
func (id *Identity) Serial() string { return id.Certificate.Leaf.SerialNumber.Text(16) }

// newIdentity checks that the pieces of a registration fit together: the
// certificate is for key, names agentID, is a client certificate issued by the
// CA bundle, and has not expired at now.
func newIdentity(agentID string, key *ecdsa.PrivateKey, certPEM, caPEM []byte, now time.Time) (*Identity, error) {
	if agentID == "" {
		return nil, errors.New("agent ID is empty")
	}
	chain, err := parseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	leaf := chain[0]
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("certificate is not for the agent's key")
	}
	if !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("%w at %s", ErrCertificateExpired, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := checkSPIFFEID(leaf, agentID); err != nil {
		return nil, err
	}
	cas, err := parseCertificates(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	if err := verifyClientCert(chain, roots, now); err != nil {
		return nil, err
	}
	tlsCert := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		tlsCert.Certificate = append(tlsCert.Certificate, c.Raw)
	}
	return &Identity{AgentID: agentID, Certificate: tlsCert, CAs: roots}, nil
}

// checkSPIFFEID requires the URI SAN that binds the certificate to agentID:
// the control plane takes the stream's identity from it.
func checkSPIFFEID(leaf *x509.Certificate, agentID string) error {
	want := SPIFFEPrefix + agentID
	for _, u := range leaf.URIs {
		if u.String() == want {
			return nil
		}
	}
	return fmt.Errorf("certificate does not carry the URI SAN %s", want)
}

// verifyClientCert checks that chain[0] chains to roots and may be used for
// client authentication, as the control plane will check it.
func verifyClientCert(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	// A certificate issued a moment ago may start "in the future" on a host
	// whose clock is a little behind; expiry is checked by the caller, so
	// verify at the later of now and NotBefore.
	at := now
	if at.Before(chain[0].NotBefore) {
		at = chain[0].NotBefore
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("certificate does not verify against the CA bundle: %w", err)
	}
	return nil
}
