package backup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// scratchUser is the OS user that runs scratch and restored servers when
// the agent runs as root (initdb and postgres refuse to run as root).
const scratchUser = "postgres"

// serverCred is the credential restored and scratch servers run with: nil
// (the agent's own user) unless the agent runs as root.
func serverCred() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(scratchUser)
	if err != nil {
		return nil, fmt.Errorf("the agent runs as root and there is no %s OS user to run a PostgreSQL server as: %w", scratchUser, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// chownTree gives the tree at root to cred's user (nothing when cred is nil).
func chownTree(root string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(cred.Uid), int(cred.Gid))
	})
}

// pgServer is a PostgreSQL server the agent starts for a drill or a
// point-in-time restore, never the live one.
type pgServer struct {
	e       *Executor
	dataDir string
	sockDir string
	port    int
	logPath string
	cred    *syscall.Credential
}

// pgCtl runs pg_ctl with args as the server's user.
func (s *pgServer) pgCtl(ctx context.Context, args ...string) error {
	bin, err := s.e.pgBinary("pg_ctl")
	if err != nil {
		return err
	}
	_, err = s.e.runPG(ctx, pgRun{bin: bin, args: append([]string{"-D", s.dataDir}, args...), cred: s.cred, dir: "/"})
	return err
}

// initdb creates the server's data directory with a trusted superuser
// "postgres" reachable only through the unix socket.
func (s *pgServer) initdb(ctx context.Context) error {
	bin, err := s.e.pgBinary("initdb")
	if err != nil {
		return err
	}
	_, err = s.e.runPG(ctx, pgRun{bin: bin, cred: s.cred, dir: "/", args: []string{"-D", s.dataDir, "-U", "postgres",
		"--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--locale=C", "--no-sync"}})
	return err
}

// start starts the server (pg_ctl start) with settings ("name=value")
// and, when wait is set, waits up to timeout for it to accept connections.
func (s *pgServer) start(ctx context.Context, wait bool, timeout time.Duration, settings ...string) error {
	opts := []string{"-p", strconv.Itoa(s.port), "-k", s.sockDir}
	for _, kv := range settings {
		opts = append(opts, "-c", kv)
	}
	args := []string{"-l", s.logPath, "-o", shellJoin(opts), "start"}
	if wait {
		args = append(args, "-w", "-t", strconv.Itoa(int(timeout.Seconds())))
	} else {
		args = append(args, "-W")
	}
	if err := s.pgCtl(ctx, args...); err != nil {
		return fmt.Errorf("start the server in %s: %w; its log: %s", s.dataDir, err, s.logTail())
	}
	return nil
}

// stop stops the server fast (immediate: a scratch server's data does not
// matter) and waits for it to exit.
func (s *pgServer) stop(immediate bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mode := "fast"
	if immediate {
		mode = "immediate"
	}
	return s.pgCtl(ctx, "stop", "-m", mode, "-w")
}

// running reports whether the server's postmaster is alive.
func (s *pgServer) running(ctx context.Context) bool {
	return s.pgCtl(ctx, "status") == nil
}

// logTail is the end of the server's log, for error messages.
func (s *pgServer) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	w := &tailWriter{max: stderrTailBytes}
	_, _ = w.Write(b)
	return w.lastLines(stderrLines)
}

// conninfo reaches database dbname of the server as its superuser.
func (s *pgServer) conninfo(dbname string) Database {
	return Database{Host: s.sockDir, Port: s.port, User: "postgres", DBName: dbname, SSLMode: "disable"}
}

// shellJoin quotes args for pg_ctl -o, which passes them through a shell.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// freePort returns a TCP port of 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portFree reports whether nothing listens on port of 127.0.0.1.
func portFree(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	return l.Close() == nil
}

// scratchDir makes a private directory for a scratch server, enterable by
// cred's user.
func (e *Executor) scratchDir(cred *syscall.Credential) (string, error) {
	dir, err := os.MkdirTemp(e.cfg.ScratchDirectory, scratchPrefix)
	if err != nil {
		return "", fmt.Errorf("scratch directory: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return "", errors.Join(fmt.Errorf("scratch directory: %w", err), os.RemoveAll(dir))
		}
	}
	return dir, nil
}

// scratchPrefix starts the names of the drills' scratch directories.
const scratchPrefix = "flotilla-scratch-"

// cleanScratch stops the scratch servers and removes the scratch and
// working directories an agent killed in the middle of a drill, a base
// backup or a restore left behind. It runs before the executor accepts
// commands, so none of them belongs to a running command.
func (e *Executor) cleanScratch() {
	parent := e.cfg.ScratchDirectory
	if parent == "" {
		parent = os.TempDir()
	}
	scratch, _ := filepath.Glob(filepath.Join(parent, scratchPrefix+"*"))
	for _, dir := range scratch {
		data := filepath.Join(dir, "data")
		if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
			cred, _ := serverCred()
			srv := &pgServer{e: e, dataDir: data, cred: cred}
			if err := srv.stop(true); err != nil {
				e.log.Warn("cannot stop a scratch server left by an interrupted drill", zap.String("data_directory", data), zap.Error(err))
				continue
			}
		}
		e.removeLeftover(dir, "a scratch directory left by an interrupted drill")
	}
	for _, prefix := range []string{".basebackup-", ".restore-", ".pitr-"} {
		work, _ := filepath.Glob(filepath.Join(e.dir, prefix+"*"))
		for _, dir := range work {
			e.removeLeftover(dir, "a working directory left by an interrupted command")
		}
	}
}

func (e *Executor) removeLeftover(dir, what string) {
	if err := os.RemoveAll(dir); err != nil {
		e.log.Warn("cannot remove "+what, zap.String("directory", dir), zap.Error(err))
		return
	}
	e.log.Info("removed "+what, zap.String("directory", dir))
}
