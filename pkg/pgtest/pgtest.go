package pgtest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// LibDir holds the Debian PostgreSQL packages' binaries, one directory per
// major version.
const LibDir = "/usr/lib/postgresql"

// E2EEnv is the environment variable that turns missing dependencies into
// failures.
const E2EEnv = "FLOTILLA_E2E"

// ErrMissing is wrapped by the errors that say a dependency of the cluster
// (the server binaries, the postgres OS user) is not on this machine.
var ErrMissing = errors.New("dependency missing")

// Required reports whether missing dependencies must fail the test.
func Required() bool { return os.Getenv(E2EEnv) == "1" }

// Require skips the test because a dependency is missing, or fails it
// under FLOTILLA_E2E=1.
func Require(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s=1 and a dependency is missing: %s", E2EEnv, msg)
	}
	t.Skipf("skipping: %s (set %s=1 to make this a failure)", msg, E2EEnv)
}

// Options change how a cluster is started; the zero value listens on
// 127.0.0.1 only.
type Options struct {
	// Listen are addresses the server listens on besides 127.0.0.1.
	Listen []netip.Addr
	// HBA are pg_hba.conf rules appended before the server starts.
	HBA []string
	// Settings are server settings ("name=value") passed with -c after
	// the fixture's own (fsync=off, shared_buffers=16MB,
	// max_connections=100), which they override.
	Settings []string
	// Parent is the directory the cluster's own directory is made in
	// (default os.TempDir()); the postgres OS user must be able to enter
	// it when the caller runs as root. A benchmark puts it on tmpfs.
	Parent string
}

// Start starts a cluster that is stopped and removed when t ends.
func Start(t testing.TB) *Postgres {
	t.Helper()
	return StartWith(t, Options{})
}

// StartOn is Start with the server also listening on addr and accepting
// password (SCRAM) connections from clients: a Docker network's gateway and
// subnet, say, for clients in containers to reach a server on the host. The
// superuser stays reachable only through the unix socket (it has no
// password, so SCRAM cannot let it in).
func StartOn(t testing.TB, addr netip.Addr, clients netip.Prefix) *Postgres {
	t.Helper()
	if !addr.IsValid() || !clients.IsValid() {
		t.Fatalf("pgtest.StartOn: invalid listen address %v or client network %v", addr, clients)
	}
	return StartWith(t, Options{
		Listen: []netip.Addr{addr},
		HBA:    []string{fmt.Sprintf("host all all %s scram-sha-256", clients.Masked())},
	})
}

// StartWith starts a cluster with opts that is stopped and removed when t
// ends. A missing dependency skips t (fails it under FLOTILLA_E2E=1).
func StartWith(t testing.TB, opts Options) *Postgres {
	t.Helper()
	p, err := Launch(opts)
	if errors.Is(err, ErrMissing) {
		Require(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Log(err)
		}
	})
	return p
}

// NewestBinary returns the newest installed version (in LibDir) of a
// PostgreSQL program, or "" when none is installed.
func NewestBinary(name string) string {
	matches, _ := filepath.Glob(filepath.Join(LibDir, "*", "bin", name))
	sort.Slice(matches, func(i, j int) bool { return majorVersion(matches[i]) > majorVersion(matches[j]) })
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.Mode()&0o111 != 0 {
			return m
		}
	}
	return ""
}

// majorVersion is N of /usr/lib/postgresql/N/bin/name (9.6 counts as 9.6, below 10).
func majorVersion(path string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(path))), 64)
	return v
}

// serverUser returns the postgres OS user's credential, for a test running
// as root: initdb and postgres refuse to run as root.
func serverUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root and no postgres OS user to run the server as: %v", ErrMissing, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// listenAddresses is the server's listen_addresses setting.
func listenAddresses(extra []netip.Addr) string {
	addrs := []string{"127.0.0.1"}
	for _, a := range extra {
		addrs = append(addrs, a.String())
	}
	return strings.Join(addrs, ",")
}

// command is name of the cluster's version, run in dir as the server's user.
func command(binDir, dir string, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return cmd
}
