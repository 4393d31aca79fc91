package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"flotilla.dev/agent/internal/agent"
	"flotilla.dev/agent/internal/config"
	"flotilla.dev/pkg/logging"
	pkgrun "flotilla.dev/pkg/run"
	"go.uber.org/zap"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

// shutdownDeadline bounds a graceful shutdown; after it the process exits
// anyway. It leaves room for running commands' 30s grace (they report
// their outcome before the stream closes); give systemd's TimeoutStopSec
// or docker stop -t at least this much.
const shutdownDeadline = 40 * time.Second

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the agent could not run (e.g. join token rejected)
	exitUsage  = 2 // invalid flags or configuration
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) > 0 && (args[0] == "wal-push" || args[0] == "wal-fetch") {
		return runWAL(args, os.Stderr)
	}
	cfg, err := config.Load(args, os.LookupEnv, os.Stderr)
	switch {
	case errors.Is(err, config.ErrVersion):
		fmt.Println(version)
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		return exitUsage
	}
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitUsage
	}
	defer func() { _ = log.Sync() }()

	acfg, closeExecutors, err := executors(cfg, configPath(args), log)
	defer closeExecutors()
	if err != nil {
		log.Error("cannot start: command executors", zap.Error(err))
		return exitUsage
	}
	acfg.Config, acfg.Version, acfg.Logger = cfg, version, log
	a, err := agent.New(acfg)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	done := make(chan struct{})
	defer close(done)
	go exitIfShutdownHangs(ctx, stop, done, log)

	if err := a.Run(ctx); err != nil {
		log.Error("agent failed", zap.Error(err))
		return exitFailed
	}
	return exitOK
}

// exitIfShutdownHangs waits for a signal, then gives the agent
// shutdownDeadline to stop before exiting the process.
func exitIfShutdownHangs(ctx context.Context, stop context.CancelFunc, done <-chan struct{}, log *zap.Logger) {
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	stop() // restore default signal handling: a second signal kills at once
	log.Info("signal received, shutting down", zap.Duration("deadline", shutdownDeadline))
	pkgrun.Stop(shutdownDeadline, func() { <-done }, func() {
		log.Error("graceful shutdown took too long, exiting")
		_ = log.Sync()
		os.Exit(exitFailed)
	})
}
