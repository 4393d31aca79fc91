package nginx

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// settleTimeout bounds every wait on nginx or on traffic.
const settleTimeout = 15 * time.Second

// requireNginx returns the nginx binary, or skips the test when there is
// none, except under FLOTILLA_E2E=1 where a missing nginx is a failure.
func requireNginx(t *testing.T) string {
	t.Helper()
	bin, err := resolveBinary("")
	if err == nil {
		return bin
	}
	if os.Getenv("FLOTILLA_E2E") == "1" {
		t.Fatalf("nginx is required (FLOTILLA_E2E=1): %v", err)
	}
	t.Skipf("nginx not installed (apt-get install nginx), skipping: %v", err)
	return ""
}

// backend is an HTTP server on loopback that answers with its name and
// counts the requests it served.
type backend struct {
	name string
	addr string // host:port as written in the upstream file
	hits atomic.Int64
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		b.hits.Add(1)
		_, _ = io.WriteString(w, b.name)
	}))
	t.Cleanup(srv.Close)
	b.addr = srv.Listener.Addr().String()
	return b
}

// nginxServer is an nginx that a test configured and may start: every file
// it writes (pid, logs, temporary files) is in its own directory.
type nginxServer struct {
	bin          string
	dir          string
	conf         string // the main configuration
	upstreamFile string // included; holds "upstream app"
	extraFile    string // included; tests break it to make nginx -t fail
	errorLog     string
	url          string
	cmd          *exec.Cmd
	exited       chan struct{}
}

// newNginx writes a configuration that proxies 127.0.0.1:<free port> to
// the upstream "app" made of backends. The directory is world-traversable
// because nginx's workers run as an unprivileged user when tests run as
// root.
func newNginx(t *testing.T, backends ...*backend) *nginxServer {
	t.Helper()
	bin := requireNginx(t)
	// Resolved, so that paths compare equal to the ones the executor reports.
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := &nginxServer{
		bin:          bin,
		dir:          dir,
		conf:         filepath.Join(dir, "nginx.conf"),
		upstreamFile: filepath.Join(dir, "upstreams", "app.conf"),
		extraFile:    filepath.Join(dir, "extra.conf"),
		errorLog:     filepath.Join(dir, "error.log"),
	}
	port := freePort(t)
	n.url = fmt.Sprintf("http://127.0.0.1:%d/", port)
	var servers strings.Builder
	for _, b := range backends {
		fmt.Fprintf(&servers, "    server %s max_fails=0;\n", b.addr)
	}
	writeFile(t, n.upstreamFile, "# Managed by flotilla tests.\nupstream app {\n"+servers.String()+"}\n", 0o640)
	writeFile(t, n.extraFile, "# nothing yet\n", 0o644)
	writeFile(t, n.conf, fmt.Sprintf(nginxConfTemplate, dir, port), 0o644)
	return n
}

const nginxConfTemplate = `worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log notice;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/upstreams/app.conf;
    include %[1]s/extra.conf;
    server {
        listen 127.0.0.1:%[2]d;
        location / {
            proxy_pass http://app;
        }
    }
}
`

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by the umask
		t.Fatal(err)
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

// executor returns an Executor for n's upstream file.
func (n *nginxServer) executor(t *testing.T) *Executor {
	t.Helper()
	e, err := New(Config{ConfigFile: n.conf, Upstreams: map[string]Upstream{"app": {File: n.upstreamFile}}}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// start runs nginx in the foreground, waits until it answers, and stops it
// when the test ends.
func (n *nginxServer) start(t *testing.T) {
	t.Helper()
	n.cmd = exec.Command(n.bin, "-c", n.conf)
	var out bytes.Buffer
	n.cmd.Stdout, n.cmd.Stderr = &out, &out
	// Its own process group, so that a hung nginx is killed with its workers.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	n.exited = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() { n.stop(t) })
	waitFor(t, "nginx to answer", func() bool {
		select {
		case <-n.exited:
			t.Fatalf("nginx exited: %s\n%s", out.String(), n.readErrorLog(t))
		default:
		}
		resp, err := http.Get(n.url)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// stop asks nginx for a graceful shutdown and kills it if it lingers.
func (n *nginxServer) stop(t *testing.T) {
	_ = n.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-n.exited:
	case <-time.After(settleTimeout):
		t.Errorf("nginx did not stop within %v; killing it", settleTimeout)
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
	}
}

func (n *nginxServer) readErrorLog(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(n.errorLog)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// reloads counts the reloads nginx's master process has started.
func (n *nginxServer) reloads(t *testing.T) int {
	return strings.Count(n.readErrorLog(t), "(SIGHUP) received")
}

// workers returns the PIDs of the master's children.
func (n *nginxServer) workers(t *testing.T) map[int]bool {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	children := make(map[int]bool)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold blanks and parentheses.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(n.cmd.Process.Pid) {
			children[pid] = true
		}
	}
	return children
}

// waitReloaded waits until none of the workers in old is left and a new
// one runs: from then on every request is served with the new
// configuration, and the old workers' requests in flight are finished.
func (n *nginxServer) waitReloaded(t *testing.T, old map[int]bool) {
	t.Helper()
	waitFor(t, "nginx's old workers to exit", func() bool {
		now := n.workers(t)
		for pid := range now {
			if old[pid] {
				return false
			}
		}
		return len(now) > 0
	})
}

// waitFor polls cond until it holds, failing the test after settleTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", settleTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inode returns the file's inode number: a rewrite changes it.
func inode(fi os.FileInfo) uint64 {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0
	}
	return st.Ino
}
