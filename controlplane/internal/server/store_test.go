package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/datadir"
	"flotilla.dev/controlplane/internal/store"
)

func storeTestConfig(dataDir string) config.Config {
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.Store.Path = filepath.Join(dataDir, "flotilla.db")
	cfg.ShutdownTimeout = config.Duration(2 * time.Second)
	return cfg
}

// TestSecondServerOnDataDirIsRefused: while one control plane holds a data
// directory, a second New on it fails at once with the lock file and the
// holder's PID, and succeeds once the first one closed.
func TestSecondServerOnDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := storeTestConfig(dir)
	first, err := New(context.Background(), cfg, zaptest.NewLogger(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), cfg, zaptest.NewLogger(t), "test")
	lockFile := filepath.Join(dir, datadir.LockFile)
	if !errors.Is(err, datadir.ErrLocked) || !strings.Contains(err.Error(), lockFile) || !strings.Contains(err.Error(), fmt.Sprintf("PID %d", os.Getpid())) {
		t.Fatalf("second New: %v, want ErrLocked naming %s and PID %d", err, lockFile, os.Getpid())
	}
	first.Close()
	again, err := New(context.Background(), cfg, zaptest.NewLogger(t), "test")
	if err != nil {
		t.Fatalf("New after the first closed: %v", err)
	}
	again.Close()
}

func TestOpenStoreDrivers(t *testing.T) {
	cfg := storeTestConfig(t.TempDir())
	cfg.Store.Driver = config.DriverPostgres
	// Nothing listens on port 1: the database is unreachable.
	cfg.Store.DSN = "postgres://flotilla:hunter2@127.0.0.1:1/flotilla?connect_timeout=2"
	_, err := openConfiguredStore(context.Background(), cfg, zaptest.NewLogger(t))
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "host=127.0.0.1 port=1 ") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("postgres unreachable: %v, want store.ErrUnavailable naming the address and not the password", err)
	}
	cfg.Store.Driver = "mysql"
	if _, err := openConfiguredStore(context.Background(), cfg, zaptest.NewLogger(t)); err == nil || !strings.Contains(err.Error(), `store.driver: "mysql"`) {
		t.Errorf("mysql: %v", err)
	}
}
