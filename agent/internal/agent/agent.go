package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/commands"
	"flotilla.dev/agent/internal/config"
	"flotilla.dev/agent/internal/conn"
	"flotilla.dev/agent/internal/endpoint"
	"flotilla.dev/agent/internal/enroll"
	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/agent/internal/journal"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/logging"
	"flotilla.dev/pkg/run"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Config configures an Agent.
type Config struct {
	// Config is the operator's configuration (see package config).
	config.Config
	// Version is the agent's build version.
	Version string
	Logger  *zap.Logger
	// Clock is the agent's time source; nil is real time. Tests inject a fake.
	Clock clockwork.Clock
	// Backoff paces registration retries and reconnections; zero fields take
	// the defaults (500 ms initial, 30 s cap, jitter).
	Backoff backoff.Config
	// RenewalBackoff paces certificate renewal retries; zero fields take
	// the defaults (1 s initial, 5 min cap, jitter).
	RenewalBackoff backoff.Config
	// DialOptions are appended to every gRPC connection's options; tests use
	// them to dial an in-memory control plane.
	DialOptions []grpc.DialOption

	// Executors carry out the control plane's commands, by kind (the keys
	// are command.Kinds(): "pull", "restart", "backup", "drain", "undrain").
	// This is where the real executors are plugged in; a command of a kind
	// without an executor is rejected with a reason that says so.
	Executors map[string]executor.Executor
	// CommandShutdownGrace is how long running commands may go on at
	// shutdown before they are cancelled (default 30s). The process's own
	// shutdown deadline must leave room for it.
	CommandShutdownGrace time.Duration
	// Containers lists the containers the agent manages, for the hello and
	// every heartbeat; nil when the agent drives no Docker engine.
	Containers ContainerLister
	// Databases reads PostgreSQL statistics for every heartbeat; nil when
	// the agent watches no database.
	Databases DatabaseStatser
	// Host reads the host's metrics for every heartbeat; nil reads this
	// machine's (package hostmetrics). The fleet simulator plugs in
	// simulated readings here, so thousands of agents in one process run
	// the real heartbeat, stream and journal code without reading /proc
	// thousands of times.
	Host HostReader
	// AppHealth checks the application for every heartbeat; nil checks
	// Health.URL when one is configured (package health).
	AppHealth HealthChecker
}

// HostReader takes the host's metrics (hostmetrics.Collector does).
type HostReader interface {
	Collect(ctx context.Context) *flotillav1.HostMetrics
}

// HealthChecker checks the application's health (health.Checker does).
type HealthChecker interface {
	Check(ctx context.Context) *flotillav1.AppHealth
}

// ContainerLister lists managed containers (the Docker executor does).
type ContainerLister interface {
	ManagedContainers(ctx context.Context) ([]*flotillav1.ManagedContainer, error)
}

// HealthPorter tells the port the application's health is checked on
// when a blue-green or surge rollout moved it off health.url's port (0:
// health.url's); the Docker executor is one.
type HealthPorter interface {
	HealthPort() int
}

// ContainerResourceReader fills in the resource use of the containers a
// ContainerLister listed, leaving those it could not read without; the
// Docker executor is one. A ContainerLister that is one too has each
// heartbeat's containers read.
type ContainerResourceReader interface {
	ContainerResources(ctx context.Context, cs []*flotillav1.ManagedContainer) error
}

// DatabaseStatser reads database statistics (the backup executor does).
type DatabaseStatser interface {
	Stats(ctx context.Context) []*flotillav1.DatabaseStats
}

// Agent is a configured agent, ready to run.
type Agent struct {
	cfg        Config
	log        *zap.Logger
	enroller   *enroll.Enroller
	heartbeats *heartbeatSource
	startedAt  time.Time
}

// New validates cfg, fills its defaults and builds the agent's parts. Nothing
// talks to the network before Run.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		return nil, errors.New("agent: a logger is required")
	}
	if err := cfg.Config.Validate(); err != nil {
		return nil, err
	}
	for kind, exec := range cfg.Executors {
		if !slices.Contains(command.Kinds(), kind) || exec == nil {
			return nil, fmt.Errorf("agent: executor %q: want a non-nil executor for one of %v", kind, command.Kinds())
		}
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	pin, err := cfg.ControlPlane.CAPin()
	if err != nil {
		return nil, fmt.Errorf("config: control_plane.ca_sha256: %w", err)
	}
	enroller, err := enroll.New(enroll.Config{
		StateDir:       cfg.StateDir,
		Endpoints:      cfg.endpoints(),
		CAFile:         cfg.ControlPlane.CAFile,
		CAPin:          pin,
		JoinToken:      cfg.JoinToken,
		JoinTokenFile:  cfg.JoinTokenFile,
		FileWait:       cfg.BootstrapWait,
		Hostname:       cfg.Hostname,
		Labels:         cfg.Labels,
		Logger:         cfg.Logger.Named("enroll"),
		Clock:          cfg.Clock,
		Backoff:        cfg.Backoff,
		RenewalBackoff: cfg.RenewalBackoff,
		DialOptions:    cfg.dialOptions(),
	})
	if err != nil {
		return nil, err
	}
	heartbeats, err := newHeartbeatSource(cfg)
	if err != nil {
		return nil, err
	}
	return &Agent{
		cfg:        cfg,
		log:        cfg.Logger,
		enroller:   enroller,
		heartbeats: heartbeats,
		startedAt:  cfg.Clock.Now(),
	}, nil
}

// endpoints are the control plane's configured addresses, for the
// registration, the renewals and the stream, each rotating on its own.
func (c Config) endpoints() endpoint.Config {
	return endpoint.Config{
		Addresses:  c.ControlPlane.AddressList(),
		ServerName: c.ControlPlane.ServerName,
	}
}

func (c Config) dialOptions() []grpc.DialOption {
	opts := []grpc.DialOption{grpc.WithUserAgent("flotilla-agent/" + c.Version)}
	return append(opts, c.DialOptions...)
}

// Run registers the agent if needed, then keeps its stream open, runs the
// control plane's commands and renews its certificate until ctx is done. It
// returns nil on a graceful shutdown and an error when the agent cannot go
// on (e.g. the join token was rejected, or the journal cannot be opened).
func (a *Agent) Run(ctx context.Context) error {
	defer a.heartbeats.close()
	a.log.Info("agent starting",
		zap.String("version", a.cfg.Version),
		logging.Hostname(a.cfg.Hostname),
		zap.Any("labels", a.cfg.Labels),
		zap.Strings("control_plane_addresses", a.cfg.ControlPlane.AddressList()),
		zap.Strings("command_kinds", a.commandKinds()))

	id, err := a.enroller.Identity(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while registering
		}
		return err
	}
	// Every connection takes the current certificate at its handshake, so
	// a renewal reaches new connections without touching the stream.
	creds := a.enroller.Credentials(id)
	j, err := journal.Open(filepath.Join(a.cfg.StateDir, journal.FileName), journal.Options{
		Clock:  a.cfg.Clock,
		Logger: a.log.Named("journal"),
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := j.Close(); err != nil {
			a.log.Error("closing the journal", zap.Error(err))
		}
	}()
	// The runner sends its events through the client, which hands it the
	// commands: the client is assigned before it runs, hence before any
	// command, and so before any event.
	var client *conn.Client
	cmds, err := commands.New(commands.Config{
		Journal:       j,
		Executors:     a.cfg.Executors,
		Send:          func(ev *flotillav1.CommandEvent) error { return client.SendEvent(ev) },
		BeforeFinal:   func(cmd *flotillav1.Command) { a.showContainers(client, cmd) },
		Clock:         a.cfg.Clock,
		Logger:        a.log.Named("commands"),
		ShutdownGrace: a.cfg.CommandShutdownGrace,
	})
	if err != nil {
		return err
	}
	client, err = conn.New(conn.Config{
		Endpoints:         a.cfg.endpoints(),
		TLS:               creds.TLSConfig,
		Hello:             func() *flotillav1.Hello { return a.hello(ctx, creds.Current().AgentID) },
		Heartbeats:        a.heartbeats,
		Commands:          cmds,
		HeartbeatInterval: a.cfg.HeartbeatInterval,
		Backoff:           a.cfg.Backoff,
		Logger:            a.log.Named("conn"),
		Clock:             a.cfg.Clock,
		DialOptions:       a.cfg.dialOptions(),
	})
	if err != nil {
		_ = cmds.Close()
		return err
	}
	renew := func(ctx context.Context) error { return a.enroller.RunRenewal(ctx, creds) }
	err = serve(ctx, client, cmds, renew)
	a.log.Info("agent stopped", zap.Error(err))
	return err
}

// containerRefreshTimeout bounds the heartbeat a command that changed the
// containers waits for before its final event goes out: a heartbeat's
// Docker readings are bounded by 2 s each, its health check by its own
// timeout.
const containerRefreshTimeout = 10 * time.Second

// showContainers sends a heartbeat, before the final event of a command
// that changed the managed containers (a restart, a candidate started, a
// blue-green move), so that the control plane sees the containers as the
// command left them when it hears the command ended. Without it, a
// rollout started just after a blue-green switch-back could plan from the
// containers of the heartbeat before it (up to one interval old). When the
// heartbeat cannot be sent, the final event still is.
func (a *Agent) showContainers(client *conn.Client, cmd *flotillav1.Command) {
	switch command.Kind(cmd.GetSpec()) {
	case command.KindRestart, command.KindStartCandidate, command.KindBlueGreen:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), containerRefreshTimeout)
	defer cancel()
	if err := client.RefreshHeartbeat(ctx); err != nil {
		a.log.Debug("no heartbeat before the final event of a command that changed the containers",
			logging.CommandID(cmd.GetId()), zap.Error(err))
	}
}

// serve keeps the stream open and the certificate renewed until ctx is
// done, then lets the running commands finish (or cancels them after their
// grace) while the stream is still open, so that their final events reach
// the control plane, and only then closes the stream.
func serve(ctx context.Context, client *conn.Client, cmds *commands.Runner, renew func(context.Context) error) error {
	streamCtx, stopStream := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStream()
	return run.All(ctx,
		run.Task{Name: "stream", Run: func(context.Context) error { return client.Run(streamCtx) }},
		run.Task{Name: "renewal", Run: renew},
		run.Task{Name: "commands", Run: func(ctx context.Context) error {
			<-ctx.Done() // shutdown, or the stream failed for good
			err := cmds.Close()
			stopStream()
			return err
		}},
	)
}

// commandKinds lists the kinds of command this agent runs.
func (a *Agent) commandKinds() []string {
	var kinds []string
	for _, k := range command.Kinds() {
		if a.cfg.Executors[k] != nil {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// capabilities are what the agent announces in its hello: heartbeats, and
// the systems its executors drive.
func (a *Agent) capabilities() []string {
	caps := []string{"heartbeat"}
	for _, c := range []struct {
		capability string
		kinds      []string
	}{
		{"docker", []string{command.KindPull, command.KindRestart, command.KindStartCandidate, command.KindBlueGreen}},
		{"postgres", []string{command.KindBackup, command.KindBaseBackup, command.KindPrune, command.KindRestore, command.KindDrill}},
		{"nginx", []string{command.KindDrain, command.KindUndrain, command.KindSwapServers}},
	} {
		if slices.ContainsFunc(c.kinds, func(k string) bool { return a.cfg.Executors[k] != nil }) {
			caps = append(caps, c.capability)
		}
	}
	return caps
}

// hello is the first message of every stream.
func (a *Agent) hello(ctx context.Context, agentID string) *flotillav1.Hello {
	return &flotillav1.Hello{
		AgentId:      agentID,
		Version:      a.cfg.Version,
		Hostname:     a.cfg.Hostname,
		Labels:       a.cfg.Labels,
		Capabilities: a.capabilities(),
		Containers:   a.heartbeats.containers(ctx),
		StartedAt:    timestamppb.New(a.startedAt),
	}
}
