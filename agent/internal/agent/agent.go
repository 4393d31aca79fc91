// Package agent assembles the flotilla agent from its parts: identity
// (enroll), host metrics, application health and the control-plane stream.
package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/config"
	"flotilla.dev/agent/internal/conn"
	"flotilla.dev/agent/internal/enroll"
	"flotilla.dev/agent/internal/runner"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Capabilities are what this agent version can do, as announced in its hello.
// Executing commands ("docker", "postgres", "nginx") comes with later versions;
// until then every command is rejected.
var Capabilities = []string{"heartbeat"}

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
	// DialOptions are appended to every gRPC connection's options; tests use
	// them to dial an in-memory control plane.
	DialOptions []grpc.DialOption
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
		StateDir:      cfg.StateDir,
		Address:       cfg.ControlPlane.Address,
		ServerName:    cfg.ControlPlane.TLSServerName(),
		CAFile:        cfg.ControlPlane.CAFile,
		CAPin:         pin,
		JoinToken:     cfg.JoinToken,
		JoinTokenFile: cfg.JoinTokenFile,
		Hostname:      cfg.Hostname,
		Labels:        cfg.Labels,
		Logger:        cfg.Logger.Named("enroll"),
		Clock:         cfg.Clock,
		Backoff:       cfg.Backoff,
		DialOptions:   cfg.dialOptions(),
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

func (c Config) dialOptions() []grpc.DialOption {
	opts := []grpc.DialOption{grpc.WithUserAgent("flotilla-agent/" + c.Version)}
	return append(opts, c.DialOptions...)
}

// Run registers the agent if needed, then keeps its stream open until ctx is
// done. It returns nil on a graceful shutdown and an error when the agent
// cannot go on (e.g. the join token was rejected).
func (a *Agent) Run(ctx context.Context) error {
	defer a.heartbeats.close()
	a.log.Info("agent starting",
		zap.String("version", a.cfg.Version),
		zap.String("hostname", a.cfg.Hostname),
		zap.Any("labels", a.cfg.Labels),
		zap.String("control_plane", a.cfg.ControlPlane.Address))

	id, err := a.enroller.Identity(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while registering
		}
		return err
	}
	client, err := conn.New(conn.Config{
		Address:           a.cfg.ControlPlane.Address,
		TLS:               id.ClientTLSConfig(a.cfg.ControlPlane.TLSServerName()),
		Hello:             func() *flotillav1.Hello { return a.hello(id.AgentID) },
		Heartbeats:        a.heartbeats,
		HeartbeatInterval: a.cfg.HeartbeatInterval,
		Backoff:           a.cfg.Backoff,
		Logger:            a.log.Named("conn"),
		Clock:             a.cfg.Clock,
		DialOptions:       a.cfg.dialOptions(),
	})
	if err != nil {
		return err
	}
	err = runner.Run(ctx, client.Run)
	a.log.Info("agent stopped", zap.Error(err))
	return err
}

// hello is the first message of every stream.
func (a *Agent) hello(agentID string) *flotillav1.Hello {
	return &flotillav1.Hello{
		AgentId:      agentID,
		Version:      a.cfg.Version,
		Hostname:     a.cfg.Hostname,
		Labels:       a.cfg.Labels,
		Capabilities: Capabilities,
		Containers:   nil, // the agent manages no containers yet
		StartedAt:    timestamppb.New(a.startedAt),
	}
}
