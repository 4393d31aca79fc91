package fakecp

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"net"
	"sync"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// renewalState is what the fake does and remembers for RenewCertificate.
type renewalState struct {
	errs     []error         // answered by the next calls, in order
	hold     chan struct{}   // while open, calls wait for it to close
	renewAs  string          // names renewed certificates for this agent instead
	calls    int             // RenewCertificate calls that arrived
	renewals int             // certificates renewed
	notify   []chan struct{} // closed at the next renewal
	// issued is the latest certificate issued to each agent ID, by
	// registration or renewal.
	issued map[string]*x509.Certificate
}

// FailRenew makes the next RenewCertificate calls fail with errs, in order.
func (s *Server) FailRenew(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renewal.errs = append(s.renewal.errs, errs...)
}

// HoldRenewals makes RenewCertificate calls wait until release is called
// (or the call ends), so that a test can order a renewal after other
// events. release is idempotent and runs at the end of the test at the latest.
func (s *Server) HoldRenewals() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.renewal.hold = ch
	s.mu.Unlock()
	return sync.OnceFunc(func() {
		s.mu.Lock()
		if s.renewal.hold == ch {
			s.renewal.hold = nil
		}
		s.mu.Unlock()
		close(ch)
	})
}

// RenewAs makes the server misbehave: renewed certificates name agentID
// instead of the caller's identity.
func (s *Server) RenewAs(agentID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renewal.renewAs = agentID
}

// RenewCalls is how many RenewCertificate calls arrived.
func (s *Server) RenewCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewal.calls
}

// Renewals is how many certificates were renewed.
func (s *Server) Renewals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewal.renewals
}

// WaitRenewals waits until at least n certificates were renewed.
func (s *Server) WaitRenewals(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		if s.renewal.renewals >= n {
			s.mu.Unlock()
			return nil
		}
		ch := make(chan struct{})
		s.renewal.notify = append(s.renewal.notify, ch)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// LastIssued is the latest certificate issued to agentID, or nil.
func (s *Server) LastIssued(agentID string) *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewal.issued[agentID]
}

// RenewCertificate implements AgentService.RenewCertificate as the control
// plane does: the caller's identity comes from its verified client
// certificate only, and the new certificate carries the same agent ID.
func (s *Server) RenewCertificate(ctx context.Context, req *flotillav1.RenewCertificateRequest) (*flotillav1.RenewCertificateResponse, error) {
	agentID, _, err := agentIDFromPeer(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if err := s.waitHold(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renewal.calls++
	if len(s.renewal.errs) > 0 {
		err := s.renewal.errs[0]
		s.renewal.errs = s.renewal.errs[1:]
		return nil, err
	}
	csr, err := parseCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	if s.renewal.renewAs != "" {
		agentID = s.renewal.renewAs
	}
	certPEM, err := s.issueLocked(csr.PublicKey, agentID)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.renewal.renewals++
	for _, ch := range s.renewal.notify {
		close(ch)
	}
	s.renewal.notify = nil
	return &flotillav1.RenewCertificateResponse{CertificatePem: certPEM, CaBundlePem: s.CA.PEM}, nil
}

// waitHold waits while renewals are held.
func (s *Server) waitHold(ctx context.Context) error {
	s.mu.Lock()
	hold := s.renewal.hold
	s.mu.Unlock()
	if hold == nil {
		return nil
	}
	select {
	case <-hold:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// issueLocked signs a certificate for agentID with the current TTL and
// remembers it. s.mu must be held.
func (s *Server) issueLocked(pub crypto.PublicKey, agentID string) ([]byte, error) {
	certPEM, err := s.CA.AgentCertificate(pub, agentID, time.Now().Add(s.certTTL))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	if s.renewal.issued == nil {
		s.renewal.issued = make(map[string]*x509.Certificate)
	}
	s.renewal.issued[agentID] = cert
	return certPEM, nil
}

// trackingListener remembers the connections it accepted, so that the
// server can drop them all.
type trackingListener struct {
	net.Listener

	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns = append(l.conns, c)
	l.mu.Unlock()
	return c, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close() // one the peer closed already is simply gone
	}
}
