package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a running throwaway cluster.
type Postgres struct {
	// BinDir holds initdb, postgres, pg_dump, pg_restore of the version
	// that runs the cluster.
	BinDir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// SocketDir is the unix socket's directory.
	SocketDir string

	base     string
	cred     *syscall.Credential // the postgres OS user when the test runs as root
	listen   []netip.Addr
	settings []string
	proc     *os.Process
	exited   chan struct{}
}

// Launch initializes and starts a cluster without a test to tie it to (a
// TestMain's): the caller must Stop it. An error wrapping ErrMissing means
// PostgreSQL cannot run on this machine.
func Launch(opts Options) (*Postgres, error) {
	initdb := NewestBinary("initdb")
	if initdb == "" {
		return nil, fmt.Errorf("%w: no PostgreSQL server binaries in %s/*/bin (apt-get install postgresql)", ErrMissing, LibDir)
	}
	p := &Postgres{BinDir: filepath.Dir(initdb), listen: opts.Listen, settings: opts.Settings, exited: make(chan struct{})}
	if os.Geteuid() == 0 {
		cred, err := serverUser()
		if err != nil {
			return nil, err
		}
		p.cred = cred
	}
	if err := p.makeDirs(opts.Parent); err != nil {
		return nil, err
	}
	if err := p.initdb(opts.HBA); err != nil {
		return nil, errors.Join(err, os.RemoveAll(p.base))
	}
	if err := p.start(); err != nil {
		return nil, errors.Join(err, os.RemoveAll(p.base))
	}
	return p, nil
}

// makeDirs creates the cluster's base directory outside the test's
// temporary directory, whose parents are private to the user running the
// test (root), which the postgres user could not enter; and the socket
// directory inside it. parent "" is os.TempDir().
func (p *Postgres) makeDirs(parent string) error {
	base, err := os.MkdirTemp(parent, "flotilla-pg-")
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	// Resolved, so that paths compare equal to the ones programs report.
	if p.base, err = filepath.EvalSymlinks(base); err != nil {
		return errors.Join(fmt.Errorf("pgtest: %w", err), os.RemoveAll(base))
	}
	p.SocketDir = filepath.Join(p.base, "sock")
	dirs := []string{p.base, p.SocketDir}
	if err := os.Chmod(p.base, 0o755); err != nil {
		return errors.Join(fmt.Errorf("pgtest: %w", err), os.RemoveAll(base))
	}
	if err := os.Mkdir(p.SocketDir, 0o700); err != nil {
		return errors.Join(fmt.Errorf("pgtest: %w", err), os.RemoveAll(base))
	}
	if p.cred == nil {
		return nil
	}
	for _, d := range dirs {
		if err := os.Chown(d, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return errors.Join(fmt.Errorf("pgtest: %w", err), os.RemoveAll(base))
		}
	}
	return nil
}

// initdb creates the data directory, appends hba to pg_hba.conf and picks
// the port.
func (p *Postgres) initdb(hba []string) error {
	out, err := command(p.BinDir, p.base, p.cred, "initdb", "-D", p.dataDir(), "-U", "postgres", "--auth-local=trust",
		"--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	for _, rule := range hba {
		if err := p.appendHBA(rule); err != nil {
			return err
		}
	}
	p.Port, err = FreePort()
	return err
}

// appendHBA adds a rule to the cluster's pg_hba.conf before it starts.
func (p *Postgres) appendHBA(rule string) error {
	path := filepath.Join(p.dataDir(), "pg_hba.conf")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pgtest: open %s: %w", path, err)
	}
	_, err = fmt.Fprintf(f, "# Added by pgtest.\n%s\n", rule)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest: append to %s: %w", path, err)
	}
	return nil
}

func (p *Postgres) dataDir() string { return filepath.Join(p.base, "data") }

func (p *Postgres) logPath() string { return filepath.Join(p.base, "postgres.log") }

// start runs the server and waits until it accepts connections.
func (p *Postgres) start() error {
	// Appended to: a resumed server's log follows the halted one's.
	logFile, err := os.OpenFile(p.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logFile.Close()
	args := []string{"-D", p.dataDir(), "-p", strconv.Itoa(p.Port), "-k", p.SocketDir,
		"-c", "listen_addresses=" + listenAddresses(p.listen), "-c", "fsync=off", "-c", "shared_buffers=16MB",
		"-c", "max_connections=100"}
	for _, s := range p.settings {
		args = append(args, "-c", s)
	}
	cmd := command(p.BinDir, p.base, p.cred, "postgres", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	p.proc = cmd.Process
	go func() { _ = cmd.Wait(); close(p.exited) }()
	if err := p.waitReady(30 * time.Second); err != nil {
		return errors.Join(err, p.stopServer())
	}
	return nil
}

// waitReady polls until the server accepts a connection, exits, or timeout
// passes.
func (p *Postgres) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := p.Dial(context.Background(), "postgres")
		if err == nil {
			return conn.Close(context.Background())
		}
		select {
		case <-p.exited:
			return fmt.Errorf("pgtest: postgres exited at start:\n%s", p.ServerLog())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres not ready after %s: %w\n%s", timeout, err, p.ServerLog())
		}
	}
}

// Stop shuts the server down like "pg_ctl stop -m immediate" (SIGQUIT),
// kills it if it does not exit in time, and removes the cluster's files.
func (p *Postgres) Stop() error {
	return errors.Join(p.stopServer(), os.RemoveAll(p.base))
}

func (p *Postgres) stopServer() error {
	_ = p.proc.Signal(syscall.SIGQUIT)
	select {
	case <-p.exited:
		return nil
	case <-time.After(15 * time.Second):
		_ = p.proc.Kill()
		<-p.exited
		return errors.New("pgtest: postgres did not stop within 15s of SIGQUIT; killed it")
	}
}

// Pid is the server's (the postmaster's) process ID.
func (p *Postgres) Pid() int { return p.proc.Pid }

// Bin is the path of a PostgreSQL program of the cluster's version.
func (p *Postgres) Bin(name string) string { return filepath.Join(p.BinDir, name) }

// AdminConninfo is a libpq connection string for the superuser through the
// unix socket (trusted: no password).
func (p *Postgres) AdminConninfo(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", p.SocketDir, p.Port, dbname)
}

// Dial connects to dbname as the superuser, giving up after 5 s.
func (p *Postgres) Dial(ctx context.Context, dbname string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgx.Connect(ctx, p.AdminConninfo(dbname))
}

// ServerLog returns what the server has logged so far, for failure reports
// (e.g. the pg_hba rule that refused a client).
func (p *Postgres) ServerLog() string {
	b, err := os.ReadFile(p.logPath())
	if err != nil {
		return fmt.Sprintf("(postgres log: %v)", err)
	}
	return string(b)
}

// Halt stops the server like "pg_ctl stop -m immediate" and keeps its data
// directory and port, so that Resume can start it again: a database outage
// as clients see it (connections reset, then refused).
func (p *Postgres) Halt() error {
	select {
	case <-p.exited:
		return errors.New("pgtest: Halt: postgres is not running")
	default:
	}
	return p.stopServer()
}

// Resume starts a server halted by Halt again, on the same port and data
// directory, and waits until it accepts connections.
func (p *Postgres) Resume() error {
	select {
	case <-p.exited:
	default:
		return errors.New("pgtest: Resume: postgres is running; Halt it first")
	}
	p.exited = make(chan struct{})
	return p.start()
}
