package enroll

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrUntrustedServer wraps every failure to trust the control plane during
// registration. It is not retried: a wrong CA file or pin does not fix itself,
// and retrying would only hide the misconfiguration (or an attacker).
var ErrUntrustedServer = errors.New("control plane certificate not trusted")

// bootstrapTrust decides whether to trust the control plane before the agent
// has a CA bundle of its own: either the CA in control_plane.ca_file, or the
// certificate in the presented chain whose SHA-256 is control_plane.ca_sha256.
type bootstrapTrust struct {
	now func() time.Time
	// roots returns the trust anchors for a presented chain.
	roots func(presented []*x509.Certificate) (*x509.CertPool, error)
	// pin is set in pinning mode, to check the registration's CA bundle.
	pin []byte

	mu      sync.Mutex
	failure error // the last verification failure
}

// newBootstrapTrust builds the trust from a CA file, a pin, or both (then the
// pin must match a certificate of the file). Neither is a configuration
// error: the agent never trusts a server blindly.
func newBootstrapTrust(caFile string, pin []byte, now func() time.Time) (*bootstrapTrust, error) {
	t := &bootstrapTrust{now: now, pin: pin}
	switch {
	case caFile != "":
		pool, err := loadCAFile(caFile, pin)
		if err != nil {
			return nil, err
		}
		t.roots = func([]*x509.Certificate) (*x509.CertPool, error) { return pool, nil }
	case pin != nil:
		t.roots = t.pinnedRoot
	default:
		return nil, errors.New("config: control_plane.ca_file or control_plane.ca_sha256 is required to register " +
			"(the agent never trusts the control plane's certificate blindly; ca_sha256 is the ca_cert_sha256 that CreateJoinToken returns)")
	}
	return t, nil
}

// newBundleTrust trusts the CAs of pool, a CA bundle the agent already has.
func newBundleTrust(pool *x509.CertPool, now func() time.Time) *bootstrapTrust {
	return &bootstrapTrust{
		now:   now,
		roots: func([]*x509.Certificate) (*x509.CertPool, error) { return pool, nil },
	}
}

func loadCAFile(path string, pin []byte) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: control_plane.ca_file: %w", err)
	}
	certs, err := parseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("config: control_plane.ca_file: %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	pinFound := false
	for _, c := range certs {
		pool.AddCert(c)
		pinFound = pinFound || matchesPin(c, pin)
	}
	if pin != nil && !pinFound {
		return nil, fmt.Errorf("config: control_plane.ca_sha256 matches no certificate in control_plane.ca_file %s", path)
	}
	return pool, nil
}

// tlsConfig returns the TLS configuration for Register at a control plane
// whose certificate must carry serverName. Go's built-in
// verification needs its roots up front, but with a pin the root is only
// known once the chain is presented; so the built-in check is replaced by
// verifyConnection, which runs on every handshake and does the full check
// (chain, expiry, key usage, server name).
func (t *bootstrapTrust) tlsConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		ServerName:         serverName,
		InsecureSkipVerify: true, // replaced by VerifyConnection, never skipped
		VerifyConnection: func(cs tls.ConnectionState) error {
			return t.verifyConnection(cs, serverName)
		},
	}
}

func (t *bootstrapTrust) verifyConnection(cs tls.ConnectionState, serverName string) error {
	err := t.verify(cs.PeerCertificates, serverName)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrUntrustedServer, err)
	}
	t.mu.Lock()
	t.failure = err
	t.mu.Unlock()
	return err
}

// lastFailure returns the last handshake's verification failure, if any. gRPC
// reports a failed handshake as Unavailable with the cause flattened into
// text; this keeps the cause, so that registration can stop instead of retrying.
func (t *bootstrapTrust) lastFailure() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failure
}

func (t *bootstrapTrust) verify(presented []*x509.Certificate, serverName string) error {
	if len(presented) == 0 {
		return errors.New("the server presented no certificate")
	}
	roots, err := t.roots(presented)
	if err != nil {
		return err
	}
	return verifyServerChain(presented, roots, serverName, t.now())
}

// verifyServerChain is the full check of a control plane's certificate
// chain, as crypto/tls would do it with RootCAs and ServerName: the leaf
// chains to roots, is valid at now, is for server authentication and names
// serverName.
func verifyServerChain(presented []*x509.Certificate, roots *x509.CertPool, serverName string, now time.Time) error {
	if len(presented) == 0 {
		return errors.New("the server presented no certificate")
	}
	intermediates := x509.NewCertPool()
	for _, c := range presented[1:] {
		intermediates.AddCert(c)
	}
	_, err := presented[0].Verify(x509.VerifyOptions{
		DNSName:       serverName,
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

// pinnedRoot finds the pinned CA in the presented chain (the control plane
// sends [leaf, CA]) and makes it the only root.
func (t *bootstrapTrust) pinnedRoot(presented []*x509.Certificate) (*x509.CertPool, error) {
	for _, c := range presented {
		if matchesPin(c, t.pin) {
			pool := x509.NewCertPool()
			pool.AddCert(c)
			return pool, nil
		}
	}
	return nil, fmt.Errorf("no certificate in the chain the server presented matches control_plane.ca_sha256 %s "+
		"(the control plane must send its CA certificate after its leaf)", hex.EncodeToString(t.pin))
}

// checkBundle makes sure that, in pinning mode, the CA bundle the agent will
// trust from now on contains the pinned CA: the registration must not swap the
// CA that the operator pinned for another one.
func (t *bootstrapTrust) checkBundle(caPEM []byte) error {
	if t.pin == nil {
		return nil
	}
	certs, err := parseCertificates(caPEM)
	if err != nil {
		return err
	}
	for _, c := range certs {
		if matchesPin(c, t.pin) {
			return nil
		}
	}
	return errors.New("the CA bundle does not contain the pinned CA (control_plane.ca_sha256)")
}

func matchesPin(c *x509.Certificate, pin []byte) bool {
	if pin == nil {
		return false
	}
	sum := sha256.Sum256(c.Raw)
	return bytes.Equal(sum[:], pin)
}
