package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"flotilla.dev/pkg/logging"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "flotilla-controlplane:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "backup":
			return runBackup(context.Background(), os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
		case "restore":
			return runRestore(context.Background(), os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
		}
	}
	cfg, opts, err := config.Load(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		return err
	}
	if opts.ShowVersion {
		fmt.Println(version)
		return nil
	}
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// Build first, bind after: a second instance on the same data directory
	// fails in New on the directory's lock before it touches anything, and
	// a standby on PostgreSQL waits in New for the lease without holding
	// the ports, so that a load balancer or an agent never mistakes it for
	// a serving control plane.
	srv, err := server.New(ctx, cfg, log, version)
	if err != nil {
		return err
	}
	defer srv.Close()
	grpcLis, httpLis, err := server.Listen(cfg)
	if err != nil {
		return err
	}
	err = srv.Run(ctx, grpcLis, httpLis)
	log.Info("control plane stopped", zap.Error(err))
	return err
}
