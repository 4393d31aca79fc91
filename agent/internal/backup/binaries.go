package backup

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// postgresLibDir is where Debian and Ubuntu install each major version of
// the PostgreSQL binaries (/usr/lib/postgresql/<version>/bin).
const postgresLibDir = "/usr/lib/postgresql"

// resolveBinary finds a PostgreSQL program: the configured path when there
// is one, else name in PATH, else the newest version under libDir.
func resolveBinary(configured, name, libDir string) (string, error) {
	if configured != "" {
		p, err := exec.LookPath(configured)
		if err != nil {
			return "", fmt.Errorf("backup.%s: %q is not an executable file: %w", strings.ReplaceAll(name, "-", "_"), configured, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if p := newestInstalled(libDir, name); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("%s not found in PATH nor in %s/*/bin: install the PostgreSQL client tools or set backup.%s",
		name, libDir, strings.ReplaceAll(name, "-", "_"))
}

// newestInstalled returns libDir/<version>/bin/name for the highest version
// that has an executable name, or "" when none has.
func newestInstalled(libDir, name string) string {
	matches, _ := filepath.Glob(filepath.Join(libDir, "*", "bin", name))
	best, bestVersion := "", []int(nil)
	for _, m := range matches {
		v, ok := parseVersion(filepath.Base(filepath.Dir(filepath.Dir(m))))
		if !ok {
			continue
		}
		if _, err := exec.LookPath(m); err != nil {
			continue
		}
		if best == "" || versionLess(bestVersion, v) {
			best, bestVersion = m, v
		}
	}
	return best
}

// parseVersion parses "15" or "9.6" into its numeric parts.
func parseVersion(s string) ([]int, bool) {
	var v []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// programVersion runs "<binary> --version" and returns the version it
// prints, e.g. "15.13 (Debian 15.13-0+deb12u1)" from
// "pg_dump (PostgreSQL) 15.13 (Debian 15.13-0+deb12u1)".
func programVersion(ctx context.Context, binary string) (string, error) {
	cmd := exec.CommandContext(ctx, binary, "--version")
	cmd.Env = childEnv()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", binary, err)
	}
	line := strings.TrimSpace(string(out))
	if _, v, ok := strings.Cut(line, "(PostgreSQL) "); ok {
		return v, nil
	}
	return line, nil
}
