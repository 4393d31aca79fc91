package datadir

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary a lock holder: it acquires the lock on
// the directory named there, prints "locked", and holds it until killed.
const helperEnv = "FLOTILLA_DATADIR_LOCK_HELPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		if _, err := Acquire(dir, time.Now()); err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		fmt.Println("locked")
		select {}
	}
	os.Exit(m.Run())
}

func TestAcquireInProcess(t *testing.T) {
	dir := t.TempDir()
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l, err := Acquire(dir, started)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if want := fmt.Sprintf("pid=%d\nhostname=%s\nstarted_at=2026-01-02T03:04:05Z\n", os.Getpid(), host); string(b) != want {
		t.Errorf("lock file holds %q, want %q", b, want)
	}
	_, err = Acquire(dir, time.Now())
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("PID %d", os.Getpid())) {
		t.Fatalf("second Acquire: %v, want ErrLocked naming PID %d", err, os.Getpid())
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir, time.Now())
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
	if info, err := os.Stat(filepath.Join(dir, LockFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v, mode %v, want 0600", err, info.Mode().Perm())
	}
}

func TestAcquireMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "absent")
	if _, err := Acquire(dir, time.Now()); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, LockFile)) {
		t.Fatalf("Acquire in a missing directory: %v, want an error naming the lock file", err)
	}
}

// TestAcquireTwoProcesses holds the lock in another process (this test
// binary re-executed) and checks that this one is refused at once with the
// holder's PID, and gets the lock once the holder is killed: the kernel
// releases it, no stale lock is left behind.
func TestAcquireTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	began := time.Now()
	_, err = Acquire(dir, time.Now())
	wantPID := fmt.Sprintf("PID %d", cmd.Process.Pid)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), wantPID) || !strings.Contains(err.Error(), filepath.Join(dir, LockFile)) {
		t.Fatalf("Acquire while another process holds the lock: %v, want ErrLocked naming %s and the lock file", err, wantPID)
	}
	t.Logf("refused in %s: %v", time.Since(began), err)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	l, err := Acquire(dir, time.Now())
	if err != nil {
		t.Fatalf("Acquire after the holder died: %v", err)
	}
	l.Release()
}
