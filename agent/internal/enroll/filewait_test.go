package enroll

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/agent/internal/fakecp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// waitingFixture is a fixture whose join token and CA files are not there
// yet, in a directory another process would write them into.
func waitingFixture(t *testing.T, wait time.Duration) (f *fixture, caPEM []byte, logs *observer.ObservedLogs) {
	t.Helper()
	f = newFixture(t)
	caPEM, err := os.ReadFile(f.cfg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	shared := t.TempDir()
	f.cfg.CAFile = filepath.Join(shared, "ca.crt")
	f.cfg.JoinToken, f.cfg.JoinTokenFile = "", filepath.Join(shared, "join.token")
	f.cfg.FileWait = wait
	core, logs := observer.New(zap.InfoLevel)
	f.cfg.Logger = zap.New(core)
	return f, caPEM, logs
}

// advance waits until the enroller sleeps, runs change (the files change
// while it sleeps, never while it looks), then wakes it.
func (f *fixture) advance(t *testing.T, ctx context.Context, change func()) {
	t.Helper()
	if err := f.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change()
	}
	f.clock.Advance(time.Second)
}

func TestRegistrationWaitsForItsFiles(t *testing.T) {
	f, caPEM, logs := waitingFixture(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := f.enroller(t).Identity(ctx)
		done <- err
	}()

	// Neither file, then an empty token file (not written yet), then no
	// CA file.
	f.advance(t, ctx, func() { writeFile(t, f.cfg.JoinTokenFile, nil) })
	f.advance(t, ctx, func() { writeFile(t, f.cfg.JoinTokenFile, []byte(fakecp.JoinToken+"\n")) })
	f.advance(t, ctx, func() { writeFile(t, f.cfg.CAFile, caPEM) })
	if err := <-done; err != nil {
		t.Fatalf("registration after the files appeared: %v", err)
	}

	var missing []string
	for _, e := range logs.FilterMessage("waiting for the files registration needs").All() {
		missing = append(missing, e.ContextMap()["missing"].(string))
	}
	want := []string{
		"join_token_file: " + f.cfg.JoinTokenFile + " does not exist",
		"join_token_file: " + f.cfg.JoinTokenFile + " is empty",
		"control_plane.ca_file: " + f.cfg.CAFile + " does not exist",
	}
	if strings.Join(missing, "\n") != strings.Join(want, "\n") {
		t.Errorf("wait log lines name\n%s\nwant\n%s", strings.Join(missing, "\n"), strings.Join(want, "\n"))
	}
	if calls := f.srv.RegisterCalls(); calls != 1 {
		t.Errorf("%d Register calls, want 1: none before the files were there", calls)
	}
}

func TestRegistrationGivesUpWaitingForItsFiles(t *testing.T) {
	f, _, _ := waitingFixture(t, 3*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := f.enroller(t).Identity(ctx)
		done <- err
	}()
	for range 3 {
		f.advance(t, ctx, nil)
	}
	err := <-done
	want := "config: join_token_file: " + f.cfg.JoinTokenFile + " does not exist after waiting 3s (bootstrap_wait)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
	if calls := f.srv.RegisterCalls(); calls != 0 {
		t.Errorf("%d Register calls, want none", calls)
	}
}

func TestRegistrationWithoutWaitFailsAtOnce(t *testing.T) {
	f, _, _ := waitingFixture(t, 0)
	_, err := f.enroller(t).Identity(context.Background())
	if err == nil || !strings.Contains(err.Error(), "config: join_token_file: ") {
		t.Fatalf("err = %v, want the missing join token file named at once", err)
	}
}

func TestRegistrationFileThatIsADirectory(t *testing.T) {
	f, _, _ := waitingFixture(t, time.Minute)
	if err := os.Mkdir(f.cfg.JoinTokenFile, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := f.enroller(t).Identity(context.Background())
	if err == nil || !strings.Contains(err.Error(), "config: join_token_file: "+f.cfg.JoinTokenFile+" is a directory") {
		t.Fatalf("err = %v, want the directory refused at once", err)
	}
}

func TestNegativeFileWaitRefused(t *testing.T) {
	f := newFixture(t)
	f.cfg.FileWait = -time.Second
	if _, err := New(f.cfg); err == nil || !strings.Contains(err.Error(), "bootstrap_wait: must not be negative") {
		t.Fatalf("err = %v, want bootstrap_wait refused", err)
	}
}
