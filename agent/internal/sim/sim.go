package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"flotilla.dev/agent/internal/agent"
	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/config"
	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/logging"
)

// Config configures a simulated fleet.
type Config struct {
	// Address (or Addresses), CASHA256 and JoinToken are what every
	// agent's configuration holds: where the control plane is, the CA to
	// pin at registration, and the join token (with enough uses for the
	// whole fleet).
	Address string
	// Addresses are several control plane replicas' host:port, as
	// control_plane.addresses: each agent starts at a random one.
	Addresses []string
	CASHA256  string
	JoinToken string
	// ServerName overrides the TLS name checked in the control plane's
	// certificate (default: the host of each address).
	ServerName string
	// StateRoot holds one state directory per agent (<root>/<name>). An
	// agent whose directory already holds an identity reconnects with it
	// instead of registering again. Put it on tmpfs for large fleets: each
	// journal write is fsynced, and a real fleet has a disk per host.
	StateRoot string
	// Agents is the fleet's size; agents are named <NamePrefix>-<index>
	// with index from FirstIndex, so several processes can share one
	// control plane without their names colliding.
	Agents     int
	FirstIndex int
	NamePrefix string
	// Labels are every agent's labels, besides "sim-index".
	Labels map[string]string
	// SourceAddrs are the local addresses agents connect from, in turn;
	// empty lets the kernel choose.
	SourceAddrs []netip.Addr
	// HeartbeatInterval is every agent's heartbeat interval.
	HeartbeatInterval time.Duration
	// StartRate is how many agents start per second (0: all at once). A
	// ramp spreads the registrations' and handshakes' cost, as a fleet
	// booting over minutes does.
	StartRate float64
	// Backoff paces the agents' reconnections (zero: the agent's defaults).
	Backoff backoff.Config
	// Profile is how the simulated hosts behave.
	Profile Profile
	// DialOptions are appended to every agent's connection options (tests
	// dial an in-memory control plane).
	DialOptions []grpc.DialOption
	// Logger receives every agent's logs, each with an "agent" field; use
	// warn level or above for large fleets.
	Logger *zap.Logger
}

// Fleet is a running simulated fleet.
type Fleet struct {
	cfg   Config
	stats *Stats
}

// New validates cfg and returns a fleet ready to Run.
func New(cfg Config) (*Fleet, error) {
	switch {
	case cfg.Agents <= 0:
		return nil, fmt.Errorf("sim: agents must be positive, got %d", cfg.Agents)
	case cfg.FirstIndex < 0:
		return nil, fmt.Errorf("sim: first index must not be negative, got %d", cfg.FirstIndex)
	case cfg.StateRoot == "":
		return nil, errors.New("sim: a state root directory is required")
	case cfg.Logger == nil:
		return nil, errors.New("sim: a logger is required")
	case cfg.StartRate < 0:
		return nil, fmt.Errorf("sim: start rate must not be negative, got %v", cfg.StartRate)
	case cfg.Profile.FailureRate < 0 || cfg.Profile.FailureRate > 1:
		return nil, fmt.Errorf("sim: failure rate must be between 0 and 1, got %v", cfg.Profile.FailureRate)
	case cfg.Profile.HealthFailureRate < 0 || cfg.Profile.HealthFailureRate > 1:
		return nil, fmt.Errorf("sim: health failure rate must be between 0 and 1, got %v", cfg.Profile.HealthFailureRate)
	}
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = "sim"
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = config.DefaultHeartbeatInterval
	}
	if cfg.Profile.InitialImage == "" {
		cfg.Profile.InitialImage = "registry.sim/app:v1"
	}
	if err := os.MkdirAll(cfg.StateRoot, 0o700); err != nil {
		return nil, fmt.Errorf("sim: state root: %w", err)
	}
	return &Fleet{cfg: cfg, stats: newStats(cfg.Agents)}, nil
}

// Stats are the fleet's counters, safe to read while it runs.
func (f *Fleet) Stats() *Stats { return f.stats }

// Name is the name of the agent at index i.
func (f *Fleet) Name(i int) string { return fmt.Sprintf("%s-%06d", f.cfg.NamePrefix, i) }

// Run starts the agents at the configured rate and runs them until ctx is
// done. It returns an error only when an agent cannot be built (a bad
// configuration); agents that stop with an error (a rejected join token,
// say) are counted in Stats and logged.
func (f *Fleet) Run(ctx context.Context) error {
	var pace <-chan time.Time
	if f.cfg.StartRate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / f.cfg.StartRate))
		defer t.Stop()
		pace = t.C
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := f.cfg.FirstIndex; i < f.cfg.FirstIndex+f.cfg.Agents; i++ {
		if pace != nil {
			select {
			case <-ctx.Done():
				return nil // stopped while starting
			case <-pace:
			}
		}
		a, err := f.build(i)
		if err != nil {
			return err
		}
		f.stats.started.Add(1)
		wg.Go(func() {
			if err := a.Run(ctx); err != nil {
				f.stats.stopped.Add(1)
				f.cfg.Logger.Error("simulated agent stopped", logging.Hostname(f.Name(i)), zap.Error(err))
			}
		})
	}
	<-ctx.Done()
	return nil
}

// build assembles agent i: the real agent with simulated executors and
// readings, dialling from its source address.
func (f *Fleet) build(i int) (*agent.Agent, error) {
	name := f.Name(i)
	h := newHost(name, f.cfg.Profile, f.stats)
	labels := map[string]string{"sim-index": fmt.Sprint(i)}
	for k, v := range f.cfg.Labels {
		labels[k] = v
	}
	cfg := config.Defaults()
	cfg.ControlPlane = config.ControlPlane{
		Address: f.cfg.Address, Addresses: f.cfg.Addresses, CASHA256: f.cfg.CASHA256, ServerName: f.cfg.ServerName,
	}
	cfg.JoinToken = f.cfg.JoinToken
	cfg.StateDir = filepath.Join(f.cfg.StateRoot, name)
	cfg.Hostname = name
	cfg.Labels = labels
	cfg.HeartbeatInterval = f.cfg.HeartbeatInterval
	execs := map[string]executor.Executor{}
	for _, k := range command.Kinds() {
		execs[k] = h
	}
	var dialOpts []grpc.DialOption
	if n := len(f.cfg.SourceAddrs); n > 0 {
		dialOpts = append(dialOpts, grpc.WithContextDialer(dialFrom(f.cfg.SourceAddrs[i%n])))
	}
	dialOpts = append(dialOpts, f.cfg.DialOptions...)
	return agent.New(agent.Config{
		Config:      cfg,
		Version:     "sim",
		Logger:      f.cfg.Logger.With(logging.Hostname(name)),
		Backoff:     f.cfg.Backoff,
		DialOptions: dialOpts,
		Executors:   execs,
		Containers:  h,
		Host:        h,
		AppHealth:   h,
	})
}

// dialFrom dials TCP from the local address src.
func dialFrom(src netip.Addr) func(context.Context, string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}
}

// SourceRange returns n consecutive addresses from first (e.g. 127.1.0.1).
func SourceRange(first netip.Addr, n int) ([]netip.Addr, error) {
	if n <= 0 {
		return nil, fmt.Errorf("sim: source address count must be positive, got %d", n)
	}
	out := make([]netip.Addr, 0, n)
	for a := first; len(out) < n; a = a.Next() {
		if !a.IsValid() {
			return nil, fmt.Errorf("sim: %d addresses from %s overflow the address space", n, first)
		}
		out = append(out, a)
	}
	return out, nil
}
