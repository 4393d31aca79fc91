// Command flotilla is the command-line client of a Flotilla control plane:
// agents, fleet commands, services and rollouts, tokens and the audit trail,
// with a live view of rollouts and exit codes from their final state
// (docs/cli.md).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"flotilla.dev/cli/internal/app"
)

// version is set by the build (-X main.version=...).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], app.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Version: version})
	stop()
	os.Exit(code)
}
