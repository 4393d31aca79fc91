package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
)

// dumpArgs is pg_dump's argument vector for db. The custom format is
// compressed by pg_dump itself (zlib at its default level), so the archive
// is streamed through compression without a separate compressor, and
// pg_restore can restore it selectively and in parallel.
func dumpArgs(db Database, snapshot string) []string {
	args := []string{
		"--format=custom",
		// Never prompt: without a usable password pg_dump fails at once.
		"--no-password",
		// A conninfo string rather than -h/-p/-U/-d, so that sslmode and
		// the timeouts travel too; it holds no password.
		"--dbname=" + db.conninfo(),
	}
	if snapshot != "" {
		// The snapshot the table statistics were read in: the manifest's
		// row counts and checksums describe exactly the dumped rows.
		args = append(args, "--snapshot="+snapshot)
	}
	return args
}

// dumped is what streaming pg_dump into the archive produced.
type dumped struct {
	size   uint64
	sha256 string
	// warnings are the last lines pg_dump printed on stderr although it
	// succeeded (e.g. circular foreign-key constraints).
	warnings string
}

// dump runs pg_dump for db and streams its output into out, through a
// SHA-256 and a byte counter that reports progress. out is synced before
// dump returns. A cancelled ctx stops pg_dump; password, when not empty,
// reaches pg_dump through a temporary passfile and is redacted from any
// message pg_dump prints.
func (e *Executor) dump(ctx context.Context, db Database, password, snapshot string, out *os.File, progress func(uint64)) (dumped, error) {
	env := childEnv()
	explain := func(stderr string) string { return redact(stderr, password) }
	if password != "" {
		pf, err := writePassfile(e.tempDir, password)
		if err != nil {
			return dumped{}, err
		}
		defer pf.remove()
		env = append(env, "PGPASSFILE="+pf.path)
		// libpq names the passfile when the password is refused; the
		// operator knows the configured file, not the temporary one.
		explain = func(stderr string) string {
			return strings.ReplaceAll(redact(stderr, password), pf.path, db.PasswordFile)
		}
	}
	// runCtx also stops pg_dump when writing the archive fails.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := exec.CommandContext(runCtx, e.pgDump, dumpArgs(db, snapshot)...)
	cmd.Env = env
	terminateOnCancel(cmd)
	stderr := &tailWriter{max: stderrTailBytes}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return dumped{}, fmt.Errorf("pg_dump: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return dumped{}, fmt.Errorf("start %s: %w", e.pgDump, err)
	}

	hash := sha256.New()
	counter := newProgressCounter(e.clock, e.progressInterval, progress)
	_, copyErr := io.Copy(io.MultiWriter(out, hash, counter), stdout)
	if copyErr != nil {
		stop() // pg_dump would block on a pipe nobody reads
	}
	waitErr := cmd.Wait()

	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return dumped{}, fmt.Errorf("pg_dump stopped after %d bytes: %w", counter.n, ctx.Err())
	case copyErr != nil:
		return dumped{}, fmt.Errorf("write the archive after %d bytes: %w", counter.n, copyErr)
	case errors.As(waitErr, &exit):
		return dumped{}, fmt.Errorf("pg_dump exited with status %d: %s", exit.ExitCode(), explain(stderr.lastLines(stderrLines)))
	case waitErr != nil:
		return dumped{}, fmt.Errorf("pg_dump: %w", waitErr)
	}
	if err := out.Sync(); err != nil {
		return dumped{}, fmt.Errorf("sync the archive: %w", err)
	}
	counter.flush()
	return dumped{size: counter.n, sha256: hex.EncodeToString(hash.Sum(nil)), warnings: explain(stderr.lastLines(stderrLines))}, nil
}

// redact hides secret in s. pg_dump has no reason to print the password,
// but the message ends up in logs and in the control plane's store.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[REDACTED]")
}

// progressCounter counts the bytes written through it and reports the
// count at most once per interval (and once at the first write).
type progressCounter struct {
	clock    clockwork.Clock
	interval time.Duration
	report   func(uint64)
	n        uint64
	last     time.Time
	reported bool
}

func newProgressCounter(clock clockwork.Clock, interval time.Duration, report func(uint64)) *progressCounter {
	return &progressCounter{clock: clock, interval: interval, report: report}
}

func (c *progressCounter) Write(p []byte) (int, error) {
	c.n += uint64(len(p))
	if now := c.clock.Now(); !c.reported || now.Sub(c.last) >= c.interval {
		c.last, c.reported = now, true
		c.report(c.n)
	}
	return len(p), nil
}

// flush reports the final count.
func (c *progressCounter) flush() {
	c.report(c.n)
}
