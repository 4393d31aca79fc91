package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/fsutil"
)

// writeBootstrapFiles writes the CA certificate and a join token into the
// files bootstrap.ca_cert_file and bootstrap.join_token_file name, when
// they are configured: agents that share a volume with the control plane
// register from them on their first start (deploy/compose).
func (s *Server) writeBootstrapFiles(ctx context.Context) error {
	b := s.cfg.Bootstrap
	if b.CACertFile != "" {
		if err := os.MkdirAll(filepath.Dir(b.CACertFile), 0o755); err != nil {
			return fmt.Errorf("bootstrap.ca_cert_file: %w", err)
		}
		// The CA certificate is public: agents of any user read it.
		if err := fsutil.WriteFileAtomic(b.CACertFile, s.material.CA.CertificatePEM(), 0o644); err != nil {
			return fmt.Errorf("bootstrap.ca_cert_file: %w", err)
		}
		s.log.Info("wrote the CA certificate for agents", zap.String("file", b.CACertFile),
			zap.String("ca_sha256", s.material.CA.Fingerprint()))
	}
	if b.JoinTokenFile == "" {
		return nil
	}
	outcome, id, err := auth.EnsureBootstrapJoinToken(ctx, s.store, auth.BootstrapJoinToken{
		File: b.JoinTokenFile, TTL: b.JoinTokenTTL.Std(), MaxUses: b.JoinTokenMaxUses, DataDir: s.cfg.DataDir,
	}, s.opts.now())
	if err != nil {
		return err
	}
	switch outcome {
	case auth.BootstrapForeign:
		s.log.Warn("bootstrap.join_token_file holds a token this control plane did not write; left as it is",
			zap.String("file", b.JoinTokenFile))
	default:
		s.log.Info("bootstrap join token "+outcome, zap.String("file", b.JoinTokenFile), zap.String("token_id", id),
			zap.Int("max_uses", b.JoinTokenMaxUses), zap.Duration("ttl", b.JoinTokenTTL.Std()))
	}
	return nil
}
