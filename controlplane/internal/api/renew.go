package api

import (
	"context"
	"errors"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/pki"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// RenewCertificate implements AgentService.RenewCertificate: a new
// certificate, for the agent ID of the calling certificate, for the key of
// the new CSR. The agent's stream is not touched; the old certificate stays
// valid until it expires, so that an agent whose answer got lost can retry.
func (s *AgentService) RenewCertificate(ctx context.Context, req *flotillav1.RenewCertificateRequest) (*flotillav1.RenewCertificateResponse, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok || p.Kind != "agent" {
		return nil, status.Error(codes.Unauthenticated, "RenewCertificate needs the agent's client certificate")
	}
	if err := validateRenew(req); err != nil {
		return nil, err
	}
	// The auth layer checked the store; the registry also drops an agent
	// the moment it is deregistered.
	if _, known := s.cfg.Registry.Get(p.ID); !known {
		return nil, status.Errorf(codes.Unauthenticated, "agent %s is not registered with this control plane; register again with a join token", p.ID)
	}
	cert, certPEM, err := s.cfg.CA.SignAgent(req.GetCsr(), p.ID, s.cfg.CertValidity)
	if err != nil {
		return nil, csrError(s.log, "signing the agent's renewed certificate", err)
	}
	serial := pki.SerialHex(cert)
	err = s.cfg.Store.UpdateAgentCertificate(ctx, p.ID, serial, cert.NotAfter)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Deregistered between the checks and now: the certificate just
		// signed is never handed out.
		return nil, status.Errorf(codes.Unauthenticated, "agent %s is no longer registered", p.ID)
	case err != nil:
		s.log.Error("storing a renewed agent certificate failed", logging.AgentID(p.ID), zap.Error(err))
		return nil, status.Error(codes.Unavailable, "the renewed certificate could not be recorded; retry")
	}
	s.cfg.Registry.SetCertificate(p.ID, serial, cert.NotAfter)
	oldSerial := ""
	if old, err := auth.ClientCertificate(ctx); err == nil {
		oldSerial = pki.SerialHex(old)
	}
	s.log.Info("agent certificate renewed", logging.AgentID(p.ID), zap.String("peer", peerAddress(ctx)),
		zap.String("old_serial", oldSerial), zap.String("serial", serial), zap.Time("not_after", cert.NotAfter))
	return &flotillav1.RenewCertificateResponse{CertificatePem: certPEM, CaBundlePem: s.cfg.CA.CertificatePEM()}, nil
}

func validateRenew(req *flotillav1.RenewCertificateRequest) error {
	switch csr := req.GetCsr(); {
	case len(csr) == 0:
		return invalid("csr", "required: a PKCS#10 certificate signing request for the agent's new key")
	case len(csr) > maxCSRBytes:
		return invalid("csr", "%d bytes, at most %d allowed", len(csr), maxCSRBytes)
	}
	if _, err := pki.ParseCSR(req.GetCsr()); err != nil {
		return csrInvalid(err)
	}
	return nil
}
