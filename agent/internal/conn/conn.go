package conn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/dial"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Defaults for the zero fields of Config.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultWelcomeTimeout    = 30 * time.Second
	DefaultShutdownGrace     = 2 * time.Second
)

// HeartbeatSource takes the readings for one heartbeat. It must return
// promptly once ctx is done.
type HeartbeatSource interface {
	Heartbeat(ctx context.Context) *flotillav1.Heartbeat
}

// Config configures a Client.
type Config struct {
	// Address is the control plane's host:port (required).
	Address string
	// TLS is the mTLS configuration: the agent's certificate, the registered
	// CA bundle as roots and the server name (required).
	TLS *tls.Config
	// Hello builds the first message of each stream (required).
	Hello func() *flotillav1.Hello
	// Heartbeats takes the readings (required).
	Heartbeats HeartbeatSource
	// Commands runs the control plane's commands and gives the journal
	// report (required). Its events come back through SendEvent.
	Commands Commands
	// HeartbeatInterval is the time between heartbeats.
	HeartbeatInterval time.Duration
	// WelcomeTimeout bounds the wait for the welcome after the hello.
	WelcomeTimeout time.Duration
	// ShutdownGrace bounds the wait for the control plane to end the stream
	// after the agent closed its side.
	ShutdownGrace time.Duration
	// Backoff paces reconnections; zero fields take the backoff defaults
	// (500 ms initial, 30 s cap, jitter).
	Backoff backoff.Config
	Logger  *zap.Logger
	// Clock paces heartbeats, timeouts and backoff; nil is real time.
	Clock clockwork.Clock
	// DialOptions are appended to the connection's options (tests: bufconn).
	DialOptions []grpc.DialOption
}

// Client keeps one stream to the control plane open.
type Client struct {
	cfg Config
	log *zap.Logger

	mu      sync.Mutex
	current *session // the welcomed stream, for SendEvent; nil between streams
}

// New fills the defaults of cfg, validates it and returns a Client.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.Address == "":
		return nil, errors.New("conn: the control plane address is required")
	case cfg.TLS == nil:
		return nil, errors.New("conn: a TLS config is required")
	case cfg.Hello == nil:
		return nil, errors.New("conn: a hello builder is required")
	case cfg.Heartbeats == nil:
		return nil, errors.New("conn: a heartbeat source is required")
	case cfg.Commands == nil:
		return nil, errors.New("conn: a command runner is required")
	case cfg.Logger == nil:
		return nil, errors.New("conn: a logger is required")
	}
	setDefault(&cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	setDefault(&cfg.WelcomeTimeout, DefaultWelcomeTimeout)
	setDefault(&cfg.ShutdownGrace, DefaultShutdownGrace)
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if _, err := backoff.New(cfg.Backoff); err != nil {
		return nil, fmt.Errorf("conn: %w", err)
	}
	return &Client{cfg: cfg, log: cfg.Logger.With(zap.String("address", cfg.Address))}, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Run keeps a stream open until ctx is done, then closes it gracefully and
// returns nil. Stream failures are logged and retried, never returned.
func (c *Client) Run(ctx context.Context) error {
	cc, err := dial.New(c.cfg.Address, c.cfg.TLS, c.cfg.DialOptions...)
	if err != nil {
		return fmt.Errorf("conn: %w", err)
	}
	defer cc.Close()
	client := flotillav1.NewAgentServiceClient(cc)
	bo, _ := backoff.New(c.cfg.Backoff) // validated in New

	for {
		c.log.Info("connecting")
		started := c.cfg.Clock.Now()
		welcomed, err := c.session(ctx, client)
		if ctx.Err() != nil {
			c.log.Info("disconnected: agent shutting down")
			return nil
		}
		// A stream that was welcomed worked: start the backoff again, so a
		// control plane restart costs each agent one short delay.
		if welcomed {
			bo.Reset()
		}
		delay := bo.Next()
		c.log.Warn("disconnected",
			zap.Error(err),
			zap.Bool("was_welcomed", welcomed),
			zap.Duration("session_duration", c.cfg.Clock.Since(started)),
			zap.Duration("backoff", delay))
		if backoff.Wait(ctx, c.cfg.Clock, delay) != nil {
			c.log.Info("agent shutting down while waiting to reconnect")
			return nil
		}
	}
}
