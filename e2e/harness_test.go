// Package e2e runs Flotilla's real binaries — flotilla-controlplane,
// flotilla-agent and grpcurl — the way an engineer would, and checks what
// they report. `make test` builds the binaries into bin/ and points
// FLOTILLA_BIN_DIR at it; with FLOTILLA_E2E=1 (CI) a missing binary fails
// the run instead of skipping it.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// required reports whether missing dependencies must fail the test.
func required() bool { return os.Getenv("FLOTILLA_E2E") == "1" }

// binary returns the path of a binary in FLOTILLA_BIN_DIR, skipping (or
// failing, in CI) when it is not there.
func binary(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("FLOTILLA_BIN_DIR")
	if dir == "" {
		dir = filepath.Join("..", "bin")
	}
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err == nil {
		_, err = os.Stat(path)
	}
	if err != nil {
		msg := fmt.Sprintf("%s not found in %s (run `make build tools` or `make test`): %v", name, dir, err)
		if required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// freePort returns a loopback address with a port nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// process is a started binary whose output is kept for failure reports.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func start(t *testing.T, name, path string, env []string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(path, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.out.String())
		}
	})
	return p
}

func (p *process) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s", p.name, timeout)
		return -1
	}
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// grpcurl runs the real grpcurl against the control plane and returns its
// output.
type grpcurl struct {
	path, addr, caFile, token string
}

func (g grpcurl) run(args ...string) (string, error) {
	full := []string{"-cacert", g.caFile}
	if g.token != "" {
		full = append(full, "-H", "authorization: Bearer "+g.token)
	}
	full = append(full, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, g.path, full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("grpcurl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// call invokes a method with a JSON request and decodes the JSON answer.
func (g grpcurl) call(method string, req any, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	out, err := g.run("-d", string(body), g.addr, method)
	if err != nil {
		return err
	}
	if resp == nil {
		return nil
	}
	return json.Unmarshal([]byte(out), resp)
}

func httpGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
