package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/sim"
	"flotilla.dev/pkg/logging"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("flotilla-sim", flag.ContinueOnError)
	var (
		cfg           sim.Config
		tokenFile     string
		sourceFirst   string
		sourceCount   int
		statusAddress string
		logLevel      string
		labels        string
		maxBackoff    time.Duration
	)
	controlPlane := fs.String("control-plane", "127.0.0.1:7443", `control plane host:port, or several replicas' "a:7443,b:7443"`)
	fs.StringVar(&cfg.CASHA256, "ca-sha256", "", "hex SHA-256 of the control plane's CA certificate (required)")
	fs.StringVar(&tokenFile, "join-token-file", "", "file holding a join token with enough uses for every agent (required unless every agent is registered already)")
	fs.StringVar(&cfg.StateRoot, "state-root", "", "directory for the agents' state directories; tmpfs recommended (required)")
	fs.IntVar(&cfg.Agents, "agents", 100, "number of simulated agents")
	fs.IntVar(&cfg.FirstIndex, "first-index", 0, "index of the first agent (agents are named <prefix>-<index>)")
	fs.StringVar(&cfg.NamePrefix, "name-prefix", "sim", "agent name prefix")
	fs.StringVar(&labels, "labels", "", `extra labels for every agent, "key=value,key=value"`)
	fs.StringVar(&sourceFirst, "source-first", "", "first local source address, e.g. 127.1.0.1 (empty: the kernel chooses)")
	fs.IntVar(&sourceCount, "source-count", 16, "number of consecutive source addresses from -source-first")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 10*time.Second, "heartbeat interval of every agent")
	fs.Float64Var(&cfg.StartRate, "start-rate", 0, "agents started per second (0: all at once)")
	fs.DurationVar(&maxBackoff, "max-backoff", 0, "cap of the agents' reconnection backoff (0: the agent's default, 30s)")
	fs.DurationVar(&cfg.Profile.Pull.Mean, "pull-latency", 0, "simulated pull duration")
	fs.DurationVar(&cfg.Profile.Restart.Mean, "restart-latency", 0, "simulated restart duration")
	fs.DurationVar(&cfg.Profile.Backup.Mean, "backup-latency", 0, "simulated backup duration")
	fs.DurationVar(&cfg.Profile.Drain.Mean, "drain-latency", 0, "simulated drain/undrain duration")
	jitter := fs.Float64("latency-jitter", 0.2, "each latency varies by up to this fraction either way")
	fs.Float64Var(&cfg.Profile.FailureRate, "failure-rate", 0, "probability that a pull, restart or backup fails")
	fs.Float64Var(&cfg.Profile.HealthFailureRate, "health-failure-rate", 0, "probability that a health check fails")
	fs.StringVar(&cfg.Profile.UnhealthyImage, "unhealthy-image", "broken", "applications restarted on an image whose reference contains this are never healthy")
	fs.StringVar(&cfg.Profile.InitialImage, "initial-image", "registry.sim/app:v1", "image every application runs at start")
	fs.StringVar(&statusAddress, "status-address", "127.0.0.1:0", "address of the JSON status endpoint (/stats, /receipts?tag=)")
	fs.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg.Addresses = splitAddresses(*controlPlane)
	if err := finishConfig(&cfg, tokenFile, sourceFirst, sourceCount, labels, maxBackoff, *jitter); err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-sim:", err)
		return 2
	}
	log, err := logging.New(logLevel, "json")
	if err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-sim: -log-level:", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	cfg.Logger = log
	fleet, err := sim.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-sim:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lis, err := net.Listen("tcp", statusAddress)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-sim: -status-address:", err)
		return 2
	}
	srv := &http.Server{Handler: statusHandler(fleet), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	// The benchmarks read this line to find the status endpoint.
	fmt.Printf("flotilla-sim: status on http://%s, %d agents from index %d\n", lis.Addr(), cfg.Agents, cfg.FirstIndex)
	log.Warn("simulated fleet starting", zap.Int("agents", cfg.Agents), zap.Int("first_index", cfg.FirstIndex),
		zap.Strings("control_plane_addresses", cfg.Addresses), zap.Int("source_addresses", len(cfg.SourceAddrs)))
	if err := fleet.Run(ctx); err != nil {
		log.Error("simulated fleet failed", zap.Error(err))
		return 1
	}
	return 0
}

// splitAddresses splits the -control-plane list, dropping empty items.
func splitAddresses(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func finishConfig(cfg *sim.Config, tokenFile, sourceFirst string, sourceCount int, labels string, maxBackoff time.Duration, jitter float64) error {
	if cfg.CASHA256 == "" {
		return errors.New("-ca-sha256 is required: the CA pin from CreateJoinToken")
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return fmt.Errorf("-join-token-file: %w", err)
		}
		cfg.JoinToken = strings.TrimSpace(string(b))
	}
	if sourceFirst != "" {
		first, err := netip.ParseAddr(sourceFirst)
		if err != nil {
			return fmt.Errorf("-source-first: %w", err)
		}
		if cfg.SourceAddrs, err = sim.SourceRange(first, sourceCount); err != nil {
			return fmt.Errorf("-source-count: %w", err)
		}
	}
	if labels != "" {
		cfg.Labels = map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("-labels: %q is not key=value", kv)
			}
			cfg.Labels[k] = v
		}
	}
	if maxBackoff > 0 {
		cfg.Backoff = backoff.Config{Max: maxBackoff}
	}
	if jitter < 0 || jitter > 1 {
		return fmt.Errorf("-latency-jitter must be between 0 and 1, got %v", jitter)
	}
	for _, l := range []*sim.Latency{&cfg.Profile.Pull, &cfg.Profile.Restart, &cfg.Profile.Backup, &cfg.Profile.Drain} {
		l.Jitter = time.Duration(float64(l.Mean) * jitter)
	}
	return nil
}

func statusHandler(f *sim.Fleet) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, f.Stats().Snapshot())
	})
	mux.HandleFunc("GET /receipts", func(w http.ResponseWriter, r *http.Request) {
		tag := r.URL.Query().Get("tag")
		if tag == "" {
			http.Error(w, "the tag parameter is required (a command's image or database)", http.StatusBadRequest)
			return
		}
		writeJSON(w, f.Stats().Receipts(tag))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
