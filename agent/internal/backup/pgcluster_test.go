package backup

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// requireDependency skips the test when a dependency is missing, except
// under FLOTILLA_E2E=1 (CI), where a missing dependency is a failure.
func requireDependency(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("FLOTILLA_E2E") == "1" {
		t.Fatalf("FLOTILLA_E2E=1 but %s", msg)
	}
	t.Skipf("skipping: %s (set FLOTILLA_E2E=1 to make this a failure)", msg)
}

// pgCluster is a throwaway PostgreSQL server: its own data directory, a
// unix socket in a private directory, and TCP on 127.0.0.1:port.
type pgCluster struct {
	bin    string // directory of initdb, postgres, pg_dump, pg_restore
	base   string
	sock   string
	port   int
	cred   *syscall.Credential // the postgres OS user when the test runs as root
	exited chan struct{}
}

// startCluster runs initdb and postgres, and stops and removes the cluster
// when the test ends. Host (TCP) connections need a SCRAM password; socket
// connections as the superuser "postgres" are trusted.
func startCluster(t *testing.T) *pgCluster {
	t.Helper()
	initdb := newestInstalled(postgresLibDir, "initdb")
	if initdb == "" {
		requireDependency(t, "no PostgreSQL server binaries in %s/*/bin (apt-get install postgresql)", postgresLibDir)
	}
	c := &pgCluster{bin: filepath.Dir(initdb), exited: make(chan struct{})}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		c.cred = postgresUser(t)
	}
	c.makeDirs(t)
	c.run(t, "initdb", "-D", c.dataDir(), "-U", "postgres", "--auth-local=trust",
		"--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	c.port = freePort(t)
	c.start(t)
	return c
}

func postgresUser(t *testing.T) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		requireDependency(t, "running as root and no postgres OS user to run the server as: %v", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// makeDirs creates the cluster's base directory outside t.TempDir(), whose
// parents are private to the user running the test (root), which the
// postgres user could not enter.
func (c *pgCluster) makeDirs(t *testing.T) {
	t.Helper()
	base, err := os.MkdirTemp("", "flotilla-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	c.base, c.sock = base, filepath.Join(base, "sock")
	if err := os.Mkdir(c.sock, 0o700); err != nil {
		t.Fatal(err)
	}
	if c.cred != nil {
		for _, d := range []string{base, c.sock} {
			if err := os.Chown(d, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func (c *pgCluster) dataDir() string { return filepath.Join(c.base, "data") }

func (c *pgCluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.base
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd
}

func (c *pgCluster) run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := c.command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

// start runs postgres directly (no pg_ctl, whose -o goes through a shell)
// and waits until it accepts connections.
func (c *pgCluster) start(t *testing.T) {
	t.Helper()
	logPath := filepath.Join(c.base, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := c.command("postgres", "-D", c.dataDir(), "-p", strconv.Itoa(c.port), "-k", c.sock,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "shared_buffers=16MB",
		"-c", "max_connections=40")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	go func() { _ = cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() { c.stop(t, cmd.Process) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := c.connect(context.Background(), "postgres")
		if err == nil {
			_ = conn.Close(context.Background())
			return
		}
		select {
		case <-c.exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("postgres exited at start:\n%s", log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("postgres not ready after 30s: %v\n%s", err, log)
		}
	}
}

// stop shuts the server down like "pg_ctl stop -m immediate" (SIGQUIT),
// and kills it if it does not exit in time.
func (c *pgCluster) stop(t *testing.T, p *os.Process) {
	_ = p.Signal(syscall.SIGQUIT)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		t.Logf("postgres did not stop after SIGQUIT; killing it")
		_ = p.Kill()
		<-c.exited
	}
}

// adminConninfo connects as the superuser through the unix socket.
func (c *pgCluster) adminConninfo(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", c.sock, c.port, dbname)
}

func (c *pgCluster) connect(ctx context.Context, dbname string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgx.Connect(ctx, c.adminConninfo(dbname))
}

// mustConnect is connect for the test's own connections, closed at cleanup.
func (c *pgCluster) mustConnect(t *testing.T, dbname string) *pgx.Conn {
	t.Helper()
	conn, err := c.connect(context.Background(), dbname)
	if err != nil {
		t.Fatalf("connect to %s: %v", dbname, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// exec runs statements on dbname as the superuser.
func (c *pgCluster) exec(t *testing.T, dbname string, statements ...string) {
	t.Helper()
	conn, err := c.connect(context.Background(), dbname)
	if err != nil {
		t.Fatalf("connect to %s: %v", dbname, err)
	}
	defer conn.Close(context.Background())
	for _, s := range statements {
		if _, err := conn.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
