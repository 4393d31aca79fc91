package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LockFile is the lock's file name inside the data directory.
const LockFile = "flotilla.lock"

// ErrLocked is wrapped by Acquire's error when another process holds the
// lock.
var ErrLocked = errors.New("data directory is in use by another control plane")

// Lock is a held data-directory lock. The kernel releases it when the
// process ends, however it ends, so a crash never leaves a stale lock.
type Lock struct {
	path string
	f    *os.File
}

// Acquire takes the exclusive lock on dir's lock file without waiting and
// writes this process's PID, hostname and start time into it. When another
// process holds it, the error names the lock file and the holder as its
// file describes it.
func Acquire(dir string, now time.Time) (*Lock, error) {
	path := filepath.Join(dir, LockFile)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // the error names the file wherever it is read
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory lock %s: %w", path, err)
	}
	if err := tryLock(f); err != nil {
		holder := describeHolder(path)
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%w: lock file %s is held by %s; stop that process first (two control planes on one store would both drive the same rollouts)", ErrLocked, path, holder)
		}
		return nil, fmt.Errorf("data directory lock %s: %w", path, err)
	}
	if err := writeHolder(f, now); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory lock %s: %w", path, err)
	}
	return &Lock{path: path, f: f}, nil
}

// Path is the lock file's path.
func (l *Lock) Path() string { return l.path }

// Release gives the lock up. The file stays: removing it would let a
// process that opened it just before lock a file no longer in the
// directory while a third one locks a new one.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}

func writeHolder(f *os.File, now time.Time) error {
	host, _ := os.Hostname()
	content := fmt.Sprintf("pid=%d\nhostname=%s\nstarted_at=%s\n", os.Getpid(), host, now.UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		return err
	}
	return f.Sync()
}

// describeHolder reads the holder's record: "PID 123 on host-a since
// 2026-01-02T03:04:05Z".
func describeHolder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return "another process (which has not written its PID yet)"
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			fields[k] = v
		}
	}
	if fields["pid"] == "" {
		return "another process (its PID is not in the file)"
	}
	return fmt.Sprintf("PID %s on %s since %s", fields["pid"], fields["hostname"], fields["started_at"])
}
