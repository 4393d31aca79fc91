package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"flotilla.dev/cli/internal/app"
)

// waitFor bounds every wait of these tests: long enough never to fail a
// correct run on a loaded machine. No test asserts that anything happens
// within a time.
const waitFor = 60 * time.Second

// binary returns the path of a binary `make build` put in
// $FLOTILLA_BIN_DIR (else the repository's bin/), or skips the test
// (fails it under FLOTILLA_E2E=1) when it is not there.
func binary(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("FLOTILLA_BIN_DIR")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "..", "bin")
	}
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err == nil {
		_, err = os.Stat(path)
	}
	if err != nil {
		msg := fmt.Sprintf("%s not found in %s (run `make build`, or set FLOTILLA_BIN_DIR): %v", name, dir, err)
		if os.Getenv("FLOTILLA_E2E") == "1" {
			t.Fatalf("FLOTILLA_E2E=1 and a dependency is missing: %s", msg)
		}
		t.Skipf("skipping: %s (set FLOTILLA_E2E=1 to make this a failure)", msg)
	}
	return path
}

// lockedBuffer is a buffer written by one goroutine (a process, the
// command) while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// process is a child process stopped (SIGTERM, then SIGKILL) at the end
// of the test; its output is logged when the test fails.
func process(t *testing.T, name, path string, args ...string) *lockedBuffer {
	t.Helper()
	out := &lockedBuffer{}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(out.String(), 4000))
		}
	})
	return out
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]\n" + s[len(s)-n:]
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// eventually polls check until it returns nil, failing the test after
// waitFor with its last error.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// plane is a control plane process and the environment the command uses
// with it.
type plane struct {
	t    *testing.T
	addr string
	dir  string
	env  map[string]string
}

// startPlane starts flotilla-controlplane on SQLite in a fresh directory
// and waits until the command can list agents with its admin token.
func startPlane(t *testing.T) *plane {
	t.Helper()
	bin := binary(t, "flotilla-controlplane")
	dir := t.TempDir()
	p := &plane{t: t, addr: freeAddr(t), dir: dir}
	data := filepath.Join(dir, "cp")
	process(t, "controlplane", bin, "-data-dir", data, "-listen", p.addr, "-metrics-listen", freeAddr(t), "-log-level", "warn")
	eventually(t, "the admin token", func() error {
		b, err := os.ReadFile(filepath.Join(data, "admin.token"))
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			p.env = map[string]string{
				"FLOTILLA_ADDRESS": p.addr, "FLOTILLA_TOKEN": strings.TrimSpace(string(b)),
				"FLOTILLA_CA": filepath.Join(data, "ca.crt"), "FLOTILLA_CONFIG": filepath.Join(dir, "config.yaml"),
			}
		}
		return err
	})
	eventually(t, "the control plane to serve", func() error {
		r := p.quiet("agents", "ls")
		if r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	return p
}

// result is one run of the command.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the command in process with the plane's environment.
func (p *plane) run(args ...string) result {
	return p.runEnv(nil, args...)
}

// runEnv runs the command with env over the plane's environment.
func (p *plane) runEnv(env map[string]string, args ...string) result {
	var out, errOut lockedBuffer
	return p.runWith(context.Background(), env, &out, &errOut, args...)
}

func (p *plane) runWith(ctx context.Context, env map[string]string, out, errOut *lockedBuffer, args ...string) result {
	r := p.exec(ctx, env, out, errOut, args...)
	p.t.Logf("$ flotilla %s → exit %d\n%s%s", strings.Join(args, " "), r.code, tail(r.stdout, 3000), tail(r.stderr, 3000))
	return r
}

// quiet runs the command without logging it (polls).
func (p *plane) quiet(args ...string) result {
	var out, errOut lockedBuffer
	return p.exec(context.Background(), nil, &out, &errOut, args...)
}

func (p *plane) exec(ctx context.Context, env map[string]string, out, errOut *lockedBuffer, args ...string) result {
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return p.env[k]
	}
	code := app.Main(ctx, args, app.Env{Stdin: strings.NewReader(""), Stdout: out, Stderr: errOut, Getenv: getenv, Version: "test"})
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// startFleet starts n simulated agents (flotilla-sim) labelled role=web
// and waits until they are connected.
func (p *plane) startFleet(n int) []string {
	t := p.t
	t.Helper()
	bin := binary(t, "flotilla-sim")
	r := p.run("tokens", "join", "create", "--max-uses", fmt.Sprint(n), "--label", "role=web", "-o", "json")
	if r.code != 0 {
		t.Fatalf("join token: exit %d", r.code)
	}
	var jt struct {
		Token        string `json:"token"`
		CACertSHA256 string `json:"caCertSha256"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &jt); err != nil {
		t.Fatalf("join token: %v", err)
	}
	tokenFile := filepath.Join(p.dir, "join.token")
	if err := os.WriteFile(tokenFile, []byte(jt.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	if want := caFingerprint(t, p.env["FLOTILLA_CA"]); jt.CACertSHA256 != want {
		t.Fatalf("caCertSha256 %s, the CA file's %s", jt.CACertSHA256, want)
	}
	process(t, "sim", bin, "-control-plane", p.addr, "-ca-sha256", jt.CACertSHA256, "-join-token-file", tokenFile,
		"-state-root", filepath.Join(p.dir, "sim"), "-agents", fmt.Sprint(n), "-heartbeat-interval", "1s",
		"-initial-image", "registry.sim/app:v1")
	var ids []string
	eventually(t, fmt.Sprintf("%d agents connected", n), func() error {
		r := p.quiet("agents", "ls", "--state", "connected", "-o", "json")
		var page struct {
			Agents []struct {
				ID string `json:"id"`
			} `json:"agents"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &page); err != nil {
			return fmt.Errorf("%v: %s", err, r.stdout)
		}
		if len(page.Agents) != n {
			return fmt.Errorf("%d connected", len(page.Agents))
		}
		ids = ids[:0]
		for _, a := range page.Agents {
			ids = append(ids, a.ID)
		}
		return nil
	})
	return ids
}

func caFingerprint(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	sum := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(sum[:])
}

// writeFile writes a file in the plane's directory and returns its path.
func (p *plane) writeFile(name, content string) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// proxy forwards TCP connections to a target and can cut them all, as a
// load balancer that drops connections would.
type proxy struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cuts   int
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{lis: lis, target: target}
	go px.serve()
	t.Cleanup(func() { lis.Close(); px.cut() })
	return px
}

func (px *proxy) addr() string { return px.lis.Addr().String() }

func (px *proxy) serve() {
	for {
		c, err := px.lis.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", px.target)
		if err != nil {
			c.Close()
			continue
		}
		px.mu.Lock()
		px.conns = append(px.conns, c, up)
		px.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// cut closes every connection open through the proxy.
func (px *proxy) cut() {
	px.mu.Lock()
	defer px.mu.Unlock()
	for _, c := range px.conns {
		c.Close()
	}
	px.conns = nil
	px.cuts++
}
