package enroll

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"go.uber.org/zap"
)

// registrationFile is a file registration reads, by the setting that names it.
type registrationFile struct{ field, path string }

// files lists the registration's files that are configured.
func (e *Enroller) files() []registrationFile {
	var out []registrationFile
	for _, f := range []registrationFile{{"join_token_file", e.cfg.JoinTokenFile}, {"control_plane.ca_file", e.cfg.CAFile}} {
		if f.path != "" {
			out = append(out, f)
		}
	}
	return out
}

// notReady describes the first of files that does not exist or is empty:
// one that another process (the control plane's bootstrap, on a shared
// volume) has yet to write. Any other failure to read it is an error.
func notReady(files []registrationFile) (what string, err error) {
	for _, f := range files {
		info, err := os.Stat(f.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Sprintf("%s: %s does not exist", f.field, f.path), nil
		case err != nil:
			return "", fmt.Errorf("config: %s: %w", f.field, err)
		case info.IsDir():
			return "", fmt.Errorf("config: %s: %s is a directory, not a file", f.field, f.path)
		case info.Size() == 0:
			return fmt.Sprintf("%s: %s is empty", f.field, f.path), nil
		}
	}
	return "", nil
}

// waitForFiles waits, up to FileWait, until the join token file and the CA
// file exist and are not empty, checking again with backoff and logging
// each wait. With FileWait 0 it returns at once and registration reports
// a missing file itself.
func (e *Enroller) waitForFiles(ctx context.Context) error {
	if e.cfg.FileWait <= 0 {
		return nil
	}
	files := e.files()
	deadline := e.cfg.Clock.Now().Add(e.cfg.FileWait)
	bo, _ := backoff.New(e.cfg.Backoff) // validated in New
	for {
		what, err := notReady(files)
		if err != nil || what == "" {
			return err
		}
		left := deadline.Sub(e.cfg.Clock.Now())
		if left <= 0 {
			return fmt.Errorf("config: %s after waiting %s (bootstrap_wait); the process that writes it "+
				"(the control plane's bootstrap.join_token_file and bootstrap.ca_cert_file on a shared volume) has not", what, e.cfg.FileWait)
		}
		delay := min(bo.Next(), left)
		e.log.Info("waiting for the files registration needs", zap.String("missing", what),
			zap.Duration("retry_in", delay), zap.Duration("gives_up_in", left.Round(time.Second)))
		if err := backoff.Wait(ctx, e.cfg.Clock, delay); err != nil {
			return err
		}
	}
}
