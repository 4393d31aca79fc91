package enroll

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"time"
)

// Credentials is the agent's current identity as the TLS connections to the
// control plane present it. A renewal swaps the identity; every connection
// opened after that presents the new certificate and trusts the new CA
// bundle, while connections already open (the stream) go on undisturbed
// with the certificate they were opened with. It is safe for concurrent use.
type Credentials struct {
	current atomic.Pointer[Identity]
	now     func() time.Time
}

// Credentials returns the Credentials of the enroller's control plane,
// starting with id.
func (e *Enroller) Credentials(id *Identity) *Credentials {
	c := &Credentials{now: e.cfg.Clock.Now}
	c.current.Store(id)
	return c
}

// Current is the identity new connections present.
func (c *Credentials) Current() *Identity { return c.current.Load() }

// set makes id the identity of new connections.
func (c *Credentials) set(id *Identity) { c.current.Store(id) }

// TLSConfig is the mTLS configuration of every connection to a control
// plane whose certificate must carry serverName: the current client
// certificate, and the current CA bundle as the only roots, both read at
// each handshake.
func (c *Credentials) TLSConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &c.Current().Certificate, nil
		},
		// RootCAs is fixed once the config is in use, but a renewal may
		// bring a new CA bundle (a CA rotation). So the built-in
		// verification is replaced by verifyServer, which runs on every
		// handshake, resumed ones included, and does the same full check
		// against the current bundle: it is replaced, never skipped.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return c.verifyServer(cs, serverName)
		},
	}
}

func (c *Credentials) verifyServer(cs tls.ConnectionState, serverName string) error {
	if err := verifyServerChain(cs.PeerCertificates, c.Current().CAs, serverName, c.now()); err != nil {
		return fmt.Errorf("%w: %w", ErrUntrustedServer, err)
	}
	return nil
}
