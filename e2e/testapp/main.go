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
	"strconv"
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

	leakRate, err := leakMBPerSecond()
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: addr, Handler: handler(ver, md == "unhealthy"), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if leakRate > 0 {
		leakMax, err := leakMaxMB()
		if err != nil {
			return err
		}
		go leak(ctx, leakRate, leakMax)
		log.Printf("testapp %s leaks %g MiB of memory a second (LEAK_MB_PER_S), up to %d MiB (LEAK_MAX_MB; 0: no end)", ver, leakRate, leakMax)
	}
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

// leakMBPerSecond is LEAK_MB_PER_S: the MiB a second the application
// leaks (0, the default: none).
func leakMBPerSecond() (float64, error) {
	v := env("LEAK_MB_PER_S", "0")
	rate, err := strconv.ParseFloat(v, 64)
	if err != nil || rate < 0 || rate > 1024 {
		return 0, fmt.Errorf("testapp: LEAK_MB_PER_S=%q: want a number of MiB a second from 0 to 1024", v)
	}
	return rate, nil
}

// leakMaxMB is LEAK_MAX_MB: the MiB after which the leak stops (0, the
// default: it never stops), so that a test can hold a container above a
// threshold below its limit without the kernel's OOM kill.
func leakMaxMB() (int, error) {
	v := env("LEAK_MAX_MB", "0")
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("testapp: LEAK_MAX_MB=%q: want a whole number of MiB, 0 for no end", v)
	}
	return n, nil
}

// leaked keeps the leaked memory reachable, so the garbage collector
// never frees it.
var leaked [][]byte

// leak allocates rate MiB a second, ten times a second, and writes every
// page of it, so that it is resident: the container's working set grows
// as a leaking application's does, up to maxMB (0: no end).
func leak(ctx context.Context, rate float64, maxMB int) {
	const tick = 100 * time.Millisecond
	chunk := max(int(rate*(1<<20)/10), 1)
	t := time.NewTicker(tick)
	defer t.Stop()
	for total := 0; maxMB == 0 || total+chunk <= maxMB<<20; total += chunk {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b := make([]byte, chunk)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		leaked = append(leaked, b)
	}
}
