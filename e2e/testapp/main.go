package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Set with -ldflags "-X main.version=v1 -X main.mode=crash".
var (
	version = "dev"
	mode    = ""
)

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	if err := run(); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run() error {
	ver, md := env("APP_VERSION", version), env("APP_MODE", mode)
	addr := env("APP_ADDR", ":8080")
	switch md {
	case "", "healthy", "unhealthy":
	case "crash":
		return fmt.Errorf("testapp %s: APP_MODE=crash, exiting at once", ver)
	default:
		return fmt.Errorf("testapp: unknown APP_MODE %q (want healthy, unhealthy or crash)", md)
	}

	srv := &http.Server{Addr: addr, Handler: handler(ver, md == "unhealthy"), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("testapp %s (mode %q) listening on %s", ver, md, addr)

	select {
	case err := <-errc:
		return fmt.Errorf("testapp: serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("testapp: shutdown: %w", err)
	}
	log.Printf("testapp %s stopped", ver)
	return nil
}

// handler serves the version at / and the health document at /health.
func handler(ver string, unhealthy bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, ver)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		status, code := "healthy", http.StatusOK
		if unhealthy {
			status, code = "unhealthy", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(health{
			Status:    status,
			Timestamp: time.Now().UTC().Format(time.RFC3339),
			Database:  "ok",
			Cache:     "ok",
		})
	})
	return mux
}

// health is the document of the deployment plan's /health endpoint.
type health struct {
	Status    string `json:"status"`
	Timestamp string `json:"timestamp"`
	Database  string `json:"database"`
	Cache     string `json:"cache"`
}

func env(key, fallback string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return fallback
}
