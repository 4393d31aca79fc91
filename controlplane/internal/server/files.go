package server

import (
	"path/filepath"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/datadir"
	"flotilla.dev/controlplane/internal/fsutil"
	"flotilla.dev/controlplane/internal/pki"
)

// checkDataFiles refuses a data directory that its owner does not keep to
// itself (0700), key, token or store files looser than 0600, and a data
// directory or files of it that another user owns, naming the file and the
// chmod or chown that fixes it. An empty data directory that is too
// open (a fresh volume mount) is tightened instead.
func checkDataFiles(cfg config.Config, log *zap.Logger) error {
	tightened, err := fsutil.CheckPrivateDir(cfg.DataDir)
	if err != nil {
		return err
	}
	if tightened {
		log.Info("tightened the empty data directory to mode 0700", zap.String("dir", cfg.DataDir))
	}
	files := []string{
		filepath.Join(cfg.DataDir, pki.CAKeyFile),
		filepath.Join(cfg.DataDir, pki.ServerKeyFile),
		filepath.Join(cfg.DataDir, auth.AdminTokenFile),
		cfg.Store.Path, cfg.Store.Path + "-wal", cfg.Store.Path + "-shm",
	}
	// The files the control plane writes itself must be its own (a volume
	// written by the root image, used by the 65532 one, is not).
	for _, f := range append([]string{filepath.Join(cfg.DataDir, datadir.LockFile)}, files...) {
		if err := fsutil.CheckOwnFile(f, cfg.DataDir); err != nil {
			return err
		}
	}
	for _, f := range []string{cfg.TLS.KeyFile, cfg.TLS.CAKeyFile} {
		if f != "" {
			files = append(files, f)
		}
	}
	for _, f := range files {
		if err := fsutil.CheckSecretFile(f); err != nil {
			return err
		}
	}
	return nil
}
