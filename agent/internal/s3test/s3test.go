package s3test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"flotilla.dev/agent/internal/backup/objstore"
	"flotilla.dev/pkg/pgtest"
)

// Credentials of the server's root account.
const (
	AccessKey = "flotilla-test"
	SecretKey = "flotilla-test-secret-key"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is host:port, for objstore.S3Config.Endpoint.
	Endpoint string
	// Root is the posix backend's directory: bucket b's object k is the
	// file Root/b/k.
	Root string
	// SecretFile holds SecretKey (mode 0600).
	SecretFile string

	cmd  *exec.Cmd
	done chan struct{}
}

// binDir is where `make tools` puts versitygw: $FLOTILLA_BIN_DIR, else the
// repository's bin/.
func binDir() string {
	if d := os.Getenv("FLOTILLA_BIN_DIR"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "bin")
}

// Start runs versitygw until t ends, with the given buckets created. A
// missing binary skips t (fails it under FLOTILLA_E2E=1).
func Start(t testing.TB, buckets ...string) *Server {
	t.Helper()
	bin := filepath.Join(binDir(), "versitygw")
	if _, err := os.Stat(bin); err != nil {
		pgtest.Require(t, "versitygw not found at %s (run `make tools` or set FLOTILLA_BIN_DIR): %v", bin, err)
	}
	dir := t.TempDir()
	s := &Server{Root: filepath.Join(dir, "data"), SecretFile: filepath.Join(dir, "secret"), done: make(chan struct{})}
	if err := os.WriteFile(s.SecretFile, []byte(SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(s.Root, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, b := range buckets {
		if err := os.Mkdir(filepath.Join(s.Root, b), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Endpoint = l.Addr().String()
	_ = l.Close()
	log, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "--access", AccessKey, "--secret", SecretKey, "--port", s.Endpoint, "--quiet", "posix", s.Root)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	go func() { _ = s.cmd.Wait(); _ = log.Close(); close(s.done) }()
	t.Cleanup(s.stop)
	if err := s.waitReady(30 * time.Second); err != nil {
		logText, _ := os.ReadFile(log.Name())
		t.Fatalf("%v\n%s", err, logText)
	}
	return s
}

func (s *Server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// waitReady polls the endpoint until it answers HTTP.
func (s *Server) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Endpoint+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("versitygw exited at start")
		case <-ctx.Done():
			return fmt.Errorf("versitygw not ready on %s after %s: %w", s.Endpoint, timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Config is the agent's backup.s3 section for this server.
func (s *Server) Config() objstore.S3Config {
	return objstore.S3Config{Endpoint: s.Endpoint, AccessKeyID: AccessKey, SecretAccessKeyFile: s.SecretFile, Insecure: true}
}

// Store opens bucket under prefix.
func (s *Server) Store(t testing.TB, bucket, prefix string) *objstore.S3 {
	t.Helper()
	st, err := objstore.NewS3(s.Config(), "", bucket, prefix, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return st
}
