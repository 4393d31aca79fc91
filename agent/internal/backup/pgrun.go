package backup

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// pgRun is one run of a PostgreSQL program.
type pgRun struct {
	bin  string
	args []string
	// db and password, when password is set, reach the program through a
	// temporary passfile; errors name db.PasswordFile, never the password.
	db       Database
	password string
	// cred runs the program as another OS user (the server's, when the
	// agent runs as root); nil: the agent's user.
	cred *syscall.Credential
	dir  string
}

// run runs the program and returns its standard output; a failure quotes
// the last lines of its standard error, with the password redacted.
func (e *Executor) runPG(ctx context.Context, r pgRun) (string, error) {
	env := childEnv()
	explain := func(s string) string { return redact(s, r.password) }
	if r.password != "" {
		pf, err := writePassfile(e.tempDir, r.password)
		if err != nil {
			return "", err
		}
		defer pf.remove()
		env = append(env, "PGPASSFILE="+pf.path)
		explain = func(s string) string { return strings.ReplaceAll(redact(s, r.password), pf.path, r.db.PasswordFile) }
	}
	cmd := exec.CommandContext(ctx, r.bin, r.args...)
	cmd.Env, cmd.Dir = env, r.dir
	if r.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	}
	terminateOnCancel(cmd)
	var stdout strings.Builder
	stderr := &tailWriter{max: stderrTailBytes}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Run(); err != nil {
		name := filepath.Base(r.bin)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return "", fmt.Errorf("%s stopped: %w", name, ctxErr)
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("%s exited with status %d: %s", name, exit.ExitCode(), explain(stderr.lastLines(stderrLines)))
		}
		return "", fmt.Errorf("run %s: %w", r.bin, err)
	}
	return stdout.String(), nil
}

// pgBinary finds a program of the server binaries: backup.postgres_bin_dir,
// else the newest /usr/lib/postgresql/*/bin, else PATH.
func (e *Executor) pgBinary(name string) (string, error) {
	if e.cfg.PostgresBinDir != "" {
		p := filepath.Join(e.cfg.PostgresBinDir, name)
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("backup.postgres_bin_dir: %s: %w", p, err)
		}
		return p, nil
	}
	if p := newestInstalled(postgresLibDir, name); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found in %s/*/bin nor in PATH: install the PostgreSQL server packages or set backup.postgres_bin_dir", name, postgresLibDir)
}
