package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/durationpb"

	"flotilla.dev/bench/internal/procfs"
	"flotilla.dev/bench/internal/promtext"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// CPConfig is what a benchmark changes in the control plane's
// configuration; everything else keeps its default.
type CPConfig struct {
	// LogLevel defaults to info, the production default.
	LogLevel string
	// AgentLostAfter: 0 keeps the default (the lost-agent figure is
	// about the default).
	AgentLostAfter time.Duration
	// Profiling serves /debug/pprof/ on the metrics address.
	Profiling bool
	// FleetTotalsOnly turns off the per-agent series of /metrics
	// (per_agent_metrics: false), as docs/performance.md advises for large
	// fleets: the benchmarks read only the totals, and building ten series
	// per agent at each scrape would land inside the CPU windows.
	FleetTotalsOnly bool
}

// FleetConfig is the control plane's configuration for a fleet of simulated
// agents heartbeating every interval: totals-only metrics, and
// agent_lost_after at three intervals (the 12s default is two missed
// heartbeats at the agent's own 5s default, not at the simulators' 10s).
func FleetConfig(logLevel string, interval time.Duration) CPConfig {
	cfg := CPConfig{LogLevel: logLevel, FleetTotalsOnly: true}
	if interval > 0 {
		cfg.AgentLostAfter = max(12*time.Second, 3*interval)
	}
	return cfg
}

// ControlPlane is a running flotilla-controlplane with an operator client.
type ControlPlane struct {
	Proc        *Process
	DataDir     string
	GRPCAddr    string
	MetricsAddr string
	// Fleet is the FleetService, authenticated with the bootstrap admin token.
	Fleet flotillav1.FleetServiceClient

	env        *Env
	name       string // of its log file: <name>.log, <name>-2.log after a restart
	configPath string
	// caDir holds the CA (ca.crt, ca.key) and the bootstrap admin token
	// the operator client trusts and authenticates with: the data
	// directory, or, for a replica, the first replica's (one CA and one
	// store for all).
	caDir  string
	conn   *grpc.ClientConn
	http   *http.Client
	starts int
}

// StartControlPlane writes a configuration, starts the control plane on
// free loopback ports and waits until it serves.
func (e *Env) StartControlPlane(ctx context.Context, cfg CPConfig) (*ControlPlane, error) {
	c, err := e.newControlPlane("controlplane", "")
	if err != nil {
		return nil, err
	}
	if err := c.start(ctx, cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// newControlPlane picks the loopback ports and the files of a control
// plane called name, whose data directory and configuration are named
// after it. ca, when not empty, is the data directory of the control
// plane whose CA and admin token it shares (a replica's first).
func (e *Env) newControlPlane(name, ca string) (*ControlPlane, error) {
	grpcPort, err := freePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(e.Dir, name)
	if ca == "" {
		ca = dataDir
	}
	return &ControlPlane{
		env: e, name: name, DataDir: dataDir, configPath: filepath.Join(e.Dir, name+".yaml"),
		caDir:       ca,
		GRPCAddr:    net.JoinHostPort("127.0.0.1", fmt.Sprint(grpcPort)),
		MetricsAddr: net.JoinHostPort("127.0.0.1", fmt.Sprint(metricsPort)),
		// The scrape is read as it streams; compression would cost the
		// control plane CPU inside the measurement.
		http: &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableCompression: true}},
	}, nil
}

// start writes the configuration and launches the process.
func (c *ControlPlane) start(ctx context.Context, cfg CPConfig) error {
	e := c.env
	cfg.Profiling = cfg.Profiling || e.profiling
	yaml := c.configYAML(cfg)
	if e.store == StorePostgres {
		pg, err := e.postgres(ctx)
		if err != nil {
			return err
		}
		yaml += pg.storeYAML()
	}
	if err := os.WriteFile(c.configPath, []byte(yaml), 0o600); err != nil {
		return fmt.Errorf("%s config: %w", c.name, err)
	}
	if err := c.launch(ctx); err != nil {
		return err
	}
	if cfg.Profiling {
		e.Logf("%s profiling on: go tool pprof http://%s/debug/pprof/profile?seconds=10", c.name, c.MetricsAddr)
	}
	return nil
}

func (c *ControlPlane) configYAML(cfg CPConfig) string {
	level := cfg.LogLevel
	if level == "" {
		level = "info"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %q\nlisten_address: %q\nmetrics_address: %q\n", c.DataDir, c.GRPCAddr, c.MetricsAddr)
	// Every simulated agent registers from one of a few loopback
	// addresses; the default limit (5 a minute per address) is for a
	// fleet booting host by host.
	b.WriteString("registration_rate_limit:\n  per_minute: 1000000\n  burst: 100000\n")
	fmt.Fprintf(&b, "log:\n  level: %s\n  format: json\n", level)
	if cfg.AgentLostAfter > 0 {
		fmt.Fprintf(&b, "agent_lost_after: %s\n", cfg.AgentLostAfter)
	}
	if cfg.Profiling {
		b.WriteString("profiling: true\n")
	}
	if cfg.FleetTotalsOnly {
		b.WriteString("per_agent_metrics: false\n")
	}
	// A replica uses the CA its first replica generated: one CA signs
	// every agent's certificate, whichever replica registered it.
	if c.caDir != "" && c.caDir != c.DataDir {
		fmt.Fprintf(&b, "tls:\n  ca_cert_file: %q\n  ca_key_file: %q\n", filepath.Join(c.caDir, "ca.crt"), filepath.Join(c.caDir, "ca.key"))
	}
	return b.String()
}

// launch starts the process and waits until /healthz answers and the
// operator client is connected.
func (c *ControlPlane) launch(ctx context.Context) error {
	name := c.name
	if c.starts > 0 {
		name = fmt.Sprintf("%s-%d", c.name, c.starts+1)
	}
	c.starts++
	p, err := c.env.start(name, "flotilla-controlplane", []string{"-config", c.configPath}, nil, nil)
	if err != nil {
		return err
	}
	p.controlPlane = true
	c.Proc = p
	if err := c.waitReady(ctx, time.Minute); err != nil {
		return err
	}
	return c.dial()
}

func (c *ControlPlane) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := c.Proc.CheckRunning(); err != nil {
			return err
		}
		if c.healthy(ctx) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not serving /healthz on %s after %s; see %s", c.name, c.MetricsAddr, timeout, c.Proc.LogPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *ControlPlane) healthy(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.MetricsAddr+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// dial connects the operator client: TLS against the generated CA, the
// bootstrap admin token as bearer token.
func (c *ControlPlane) dial() error {
	caPEM, err := os.ReadFile(filepath.Join(c.caDir, "ca.crt"))
	if err != nil {
		return fmt.Errorf("control plane CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("control plane CA: ca.crt holds no PEM certificate")
	}
	token, err := os.ReadFile(filepath.Join(c.caDir, "admin.token"))
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13})
	conn, err := grpc.NewClient("passthrough:///"+c.GRPCAddr,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(bearer(strings.TrimSpace(string(token)))),
		// GetCommand of a command to tens of thousands of hosts is
		// larger than gRPC's 4 MiB default.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return fmt.Errorf("dial control plane: %w", err)
	}
	c.conn = conn
	c.Fleet = flotillav1.NewFleetServiceClient(conn)
	// Connect now, so that the first measured call does not carry the
	// operator connection's TLS handshake.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn.Connect()
	for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			return fmt.Errorf("operator connection to %s not ready after 30s (state %s)", c.GRPCAddr, st)
		}
	}
	return nil
}

// Close closes the operator client (the process is the Env's to stop).
func (c *ControlPlane) Close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// Restart is what a restart took.
type Restart struct {
	// Signalled is when SIGTERM was sent, Exited when the old process
	// was gone, Started when the new one was started and Ready when it
	// served /healthz.
	Signalled, Exited, Started, Ready time.Time
}

// Restart stops the control plane with SIGTERM, as an operator or a
// service manager would, and starts it again on the same data directory
// and addresses. The operator client is dialled anew: the old one would
// be in reconnection backoff.
func (c *ControlPlane) Restart(ctx context.Context) (Restart, error) {
	var r Restart
	c.Close()
	r.Signalled = time.Now()
	if err := c.Proc.Signal(syscall.SIGTERM); err != nil {
		return r, err
	}
	if err := c.Proc.Wait(time.Minute); err != nil {
		return r, err
	}
	r.Exited = time.Now()
	if err := c.launch(ctx); err != nil {
		return r, err
	}
	r.Started, r.Ready = c.Proc.Started, time.Now()
	return r, nil
}

// Sample reads the control plane's RSS and CPU time from /proc.
func (c *ControlPlane) Sample() (procfs.Sample, error) { return procfs.Read(c.Proc.Pid()) }

// Scrape reads the named metrics from /metrics. at is the middle of the
// request, the best estimate of when the values were read.
func (c *ControlPlane) Scrape(ctx context.Context, names ...string) (values map[string]float64, at time.Time, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.MetricsAddr+"/metrics", nil)
	if err != nil {
		return nil, at, err
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, at, fmt.Errorf("scrape /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, at, fmt.Errorf("scrape /metrics: %s", resp.Status)
	}
	values, err = promtext.Read(resp.Body, names...)
	if err != nil {
		return nil, at, fmt.Errorf("scrape /metrics: %w", err)
	}
	end := time.Now()
	return values, start.Add(end.Sub(start) / 2), nil
}

// JoinToken creates a join token for uses registrations, writes it to a
// file (0600) and returns the file and the CA pin.
func (c *ControlPlane) JoinToken(ctx context.Context, uses int) (file, pin string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.Fleet.CreateJoinToken(ctx, &flotillav1.CreateJoinTokenRequest{
		Description: "flotilla-bench", Ttl: durationpb.New(6 * time.Hour), MaxUses: int32(max(uses, 1)),
	})
	if err != nil {
		return "", "", fmt.Errorf("CreateJoinToken: %w", err)
	}
	file = filepath.Join(c.env.Dir, fmt.Sprintf("join-%s.token", resp.GetTokenId()))
	if err := os.WriteFile(file, []byte(resp.GetToken()+"\n"), 0o600); err != nil {
		return "", "", err
	}
	return file, resp.GetCaCertSha256(), nil
}

// Connected counts the agents the control plane sees as connected.
func (c *ControlPlane) Connected(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.Fleet.ListAgents(ctx, &flotillav1.ListAgentsRequest{
		States: []flotillav1.AgentState{flotillav1.AgentState_AGENT_STATE_CONNECTED}, PageSize: 1,
	})
	if err != nil {
		return 0, fmt.Errorf("ListAgents (connected): %w", err)
	}
	return int(resp.GetTotalSize()), nil
}

// WaitConnected polls until at least n agents are connected and returns
// when that was seen. check, called on every poll, stops the wait with
// its error (a simulator that died, say). Progress is printed every 5 s.
func (c *ControlPlane) WaitConnected(ctx context.Context, n int, timeout time.Duration, check func() error) (time.Time, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	lastReport := start
	for {
		if err := c.Proc.CheckRunning(); err != nil {
			return time.Time{}, err
		}
		if check != nil {
			if err := check(); err != nil {
				return time.Time{}, err
			}
		}
		got, err := c.Connected(ctx)
		now := time.Now()
		if err == nil && got >= n {
			return now, nil
		}
		if now.After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d agents connected after %s (last error: %v)", got, n, timeout, err)
		}
		if now.Sub(lastReport) >= 5*time.Second {
			c.env.Logf("%d/%d agents connected (%s)", got, n, now.Sub(start).Round(time.Second))
			lastReport = now
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CheckCapacity fails when the control plane could not hold a
// connection per agent within its open-file limit, with the limit named:
// the benchmark would otherwise wait for agents that cannot connect.
func (c *ControlPlane) CheckCapacity(agents int) error {
	limit, ok, err := c.fits(agents)
	if err != nil || ok {
		return err
	}
	return fmt.Errorf("-agents %d: the control plane may open at most %d files (RLIMIT_NOFILE), and needs one per agent plus about %d; raise the hard limit (ulimit -Hn) or run fewer agents",
		agents, limit, capacityReserve)
}

// capacityReserve is the open files a control plane needs besides one
// per agent: the store, listeners, logs and the operator connections.
const capacityReserve = 64

// fits reports whether the control plane's open-file limit leaves room
// for agents connections, and the limit (-1: unlimited).
func (c *ControlPlane) fits(agents int) (limit int, ok bool, err error) {
	limit, err = procfs.OpenFileLimit(c.Proc.Pid())
	if err != nil {
		return 0, false, err
	}
	return limit, limit < 0 || agents+capacityReserve <= limit, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
