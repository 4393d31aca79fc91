package enroll

import (
	"context"
	"crypto/ecdsa"
	"fmt"

	"flotilla.dev/agent/internal/dial"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/logging"
	"go.uber.org/zap"
)

// Renew replaces the certificate of creds once: it makes a new key and a
// CSR for it, calls RenewCertificate over mTLS with the current
// certificate, checks the answer as strictly as a registration's (a client
// certificate for the new key, naming the same agent ID, that chains to the
// CA bundle of the answer), saves it as a new generation (see StateFile) and
// only then hands it to new connections. Connections already open keep
// their certificate. On any error nothing changes, on disk or in creds.
func (e *Enroller) Renew(ctx context.Context, creds *Credentials) (*Identity, error) {
	cur := creds.Current()
	key, csr, err := newKeyAndCSR(e.cfg.Hostname)
	if err != nil {
		return nil, err
	}
	resp, err := e.callRenew(ctx, creds, csr)
	if err != nil {
		return nil, fmt.Errorf("enroll: renew: %w", err)
	}
	id, err := newIdentity(cur.AgentID, key, resp.GetCertificatePem(), resp.GetCaBundlePem(), e.cfg.Clock.Now())
	if err != nil {
		return nil, fmt.Errorf("enroll: the control plane's renewal answer is unusable: %w", err)
	}
	if err := e.save(id, key, resp.GetCertificatePem(), resp.GetCaBundlePem()); err != nil {
		return nil, err
	}
	creds.set(id)
	e.log.Info("certificate renewed",
		logging.AgentID(id.AgentID),
		zap.String("certificate_serial", id.Serial()),
		zap.Time("certificate_expires_at", id.NotAfter()),
		zap.String("previous_serial", cur.Serial()),
		zap.Time("previous_expires_at", cur.NotAfter()))
	return id, nil
}

// save writes a checked identity, its key and the certificate and CA bundle
// of the answer that issued it, as the state directory's new generation.
func (e *Enroller) save(id *Identity, key *ecdsa.PrivateKey, certPEM, caPEM []byte) error {
	keyPEM, err := encodeKey(key)
	if err != nil {
		return fmt.Errorf("enroll: encoding key: %w", err)
	}
	return e.store.save(files{keyPEM: keyPEM, certPEM: certPEM, caPEM: caPEM, agentID: id.AgentID})
}

// callRenew makes one RenewCertificate call on a connection of its own,
// whose handshake presents the current certificate, at the next endpoint:
// a renewal retried after a failure goes to another control plane.
func (e *Enroller) callRenew(ctx context.Context, creds *Credentials, csr []byte) (*flotillav1.RenewCertificateResponse, error) {
	ep, err := e.renewals.Next(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := dial.Endpoint(ep, creds.TLSConfig, e.cfg.DialOptions...)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.AttemptTimeout)
	defer cancel()
	resp, err := flotillav1.NewAgentServiceClient(conn).RenewCertificate(ctx, &flotillav1.RenewCertificateRequest{Csr: csr})
	if err != nil {
		return nil, fmt.Errorf("at %s: %w", ep, err)
	}
	return resp, nil
}
