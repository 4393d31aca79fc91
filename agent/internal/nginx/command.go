package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

const (
	// maxOutput bounds how much of nginx's output an error message carries.
	maxOutput = 4 << 10
	// reloadTimeout bounds "nginx -s reload", which runs even when the
	// command's context ends: once the signal may have been sent, waiting
	// for the answer beats leaving nginx and the file in an unknown state.
	reloadTimeout = 30 * time.Second
	// waitDelay is how long a killed nginx gets to close its output.
	waitDelay = 2 * time.Second
)

// resolveBinary finds the nginx executable: an absolute path as configured,
// a name looked up in PATH, and for the default name /usr/sbin/nginx as a
// last resort.
func resolveBinary(name string) (string, error) {
	if name == "" {
		name = DefaultBinary
	}
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	if name == DefaultBinary {
		if _, statErr := os.Stat(fallbackBinary); statErr == nil {
			return fallbackBinary, nil
		}
		return "", fieldError("nginx.binary", "%q is not in PATH and %s does not exist; install nginx or set nginx.binary", name, fallbackBinary)
	}
	return "", fieldError("nginx.binary", "%v", err)
}

// testConfig runs "nginx -t [-c file]": nginx parses the whole
// configuration, includes and all, and resolves the upstream servers'
// names.
func (e *Executor) testConfig(ctx context.Context) error {
	return e.run(ctx, "-t")
}

// reload runs "nginx -s reload [-c file]": the master process re-reads the
// configuration and starts new workers; the old ones stop accepting
// connections and exit once their requests in flight are done.
func (e *Executor) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reloadTimeout)
	defer cancel()
	return e.run(ctx, "-s", "reload")
}

// run executes nginx with args (never through a shell) and returns an
// error that carries nginx's own output when it fails.
func (e *Executor) run(ctx context.Context, args ...string) error {
	if e.configFile != "" {
		args = append(args, "-c", e.configFile)
	}
	cmd := exec.CommandContext(ctx, e.binary, args...)
	cmd.WaitDelay = waitDelay
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if ctxErr := ctx.Err(); err != nil && ctxErr != nil {
		err = errors.Join(err, ctxErr)
	}
	if err != nil {
		return fmt.Errorf("%s %s failed (%v): %s", e.binary, strings.Join(args, " "), err, trimOutput(out.Bytes()))
	}
	return nil
}

// trimOutput makes nginx's output fit an error message.
func trimOutput(out []byte) string {
	s := strings.TrimSpace(string(out))
	if len(s) > maxOutput {
		s = s[:maxOutput] + "…"
	}
	if s == "" {
		return "no output"
	}
	return s
}
