package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"flotilla.dev/agent/internal/backup"
	"flotilla.dev/agent/internal/config"
)

// walTimeout bounds one wal-push or wal-fetch; PostgreSQL retries a
// failed archive_command, and a hung one would stall archiving.
const walTimeout = 10 * time.Minute

// walUsage is printed for wrong arguments.
const walUsage = `usage:
  flotilla-agent wal-push  [-config FILE] -database NAME %p %f   (archive_command)
  flotilla-agent wal-fetch [-config FILE] -database NAME %f %p   (restore_command)`

// walConfig is the part of the agent's configuration file that wal-push
// and wal-fetch read: they run as the PostgreSQL server's user, which may
// be given a file with only these sections.
type walConfig struct {
	StateDir string        `yaml:"state_dir"`
	Backup   backup.Config `yaml:"backup"`
}

// runWAL runs "wal-push" or "wal-fetch" (the first argument) and returns
// the exit status: 0 only when the file was stored and read back (push)
// or downloaded and checked (fetch).
func runWAL(args []string, stderr io.Writer) int {
	sub := args[0]
	fs := flag.NewFlagSet("flotilla-agent "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv(config.ConfigEnv), "the agent's YAML configuration file (env "+config.ConfigEnv+")")
	database := fs.String("database", "", "the database's key in backup.databases, whose wal_destination to use")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	if fs.NArg() != 2 || *database == "" || *configPath == "" {
		_, _ = io.WriteString(stderr, walUsage+"\n")
		return exitUsage
	}
	cfg, err := loadWALConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "flotilla-agent %s: %v\n", sub, err)
		return exitUsage
	}
	store, err := backup.OpenWAL(cfg.Backup, cfg.StateDir, *database)
	if err != nil {
		fmt.Fprintf(stderr, "flotilla-agent %s: %v\n", sub, err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, walTimeout)
	defer cancel()
	if sub == "wal-push" {
		err = backup.WALPush(ctx, store, *database, fs.Arg(0), fs.Arg(1))
	} else {
		err = backup.WALFetch(ctx, store, *database, fs.Arg(0), fs.Arg(1))
	}
	if err != nil {
		fmt.Fprintf(stderr, "flotilla-agent %s: %v\n", sub, err)
		return exitFailed
	}
	return exitOK
}

// loadWALConfig reads the state directory and backup section of the
// configuration file; other sections are ignored, so that a small file
// readable by the PostgreSQL server's user is enough.
func loadWALConfig(path string) (walConfig, error) {
	cfg := walConfig{StateDir: config.DefaultStateDir}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config: %s: %w", path, err)
	}
	if err := cfg.Backup.Validate(); err != nil {
		return cfg, fmt.Errorf("config: %s: %w", path, err)
	}
	return cfg, nil
}

// configPath is the configuration file the agent was started with
// (-config, else FLOTILLA_CONFIG), or "".
func configPath(args []string) string {
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasValue {
			return value
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return os.Getenv(config.ConfigEnv)
}
