package conn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/dial"
	"flotilla.dev/agent/internal/endpoint"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/logging"
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
	// Endpoints are the control plane's addresses (at least one) and how
	// to resolve them. The client starts at a random endpoint and moves to
	// the next one whenever its stream ends.
	Endpoints endpoint.Config
	// TLS gives the mTLS configuration for a server name: the agent's
	// certificate, the registered CA bundle as roots (required).
	TLS dial.TLSFunc
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
	cfg       Config
	log       *zap.Logger
	endpoints *endpoint.Rotation

	// The connection of the last attempt, kept while the next attempt is
	// at the same endpoint; used by Run only.
	cc   *grpc.ClientConn
	ccEP endpoint.Endpoint

	mu      sync.Mutex
	current *session // the welcomed stream, for SendEvent; nil between streams
}

// New fills the defaults of cfg, validates it and returns a Client.
func New(cfg Config) (*Client, error) {
	switch {
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
	if cfg.Endpoints.Logger == nil {
		cfg.Endpoints.Logger = cfg.Logger
	}
	endpoints, err := endpoint.New(cfg.Endpoints)
	if err != nil {
		return nil, fmt.Errorf("conn: %w", err)
	}
	return &Client{cfg: cfg, log: cfg.Logger, endpoints: endpoints}, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Run keeps a stream open until ctx is done, then closes it gracefully and
// returns nil. Stream failures are logged and retried, never returned.
//
// Each attempt goes to the next endpoint of the rotation. A failed attempt
// moves on to the next endpoint at once, and only a full cycle of failures
// waits for the backoff; a stream that was welcomed resets the backoff, and
// once it ends the client waits the backoff's first, short delay (which
// spreads a replica's agents over time) and moves on to the next endpoint.
func (c *Client) Run(ctx context.Context) error {
	defer c.closeConn()
	bo, _ := backoff.New(c.cfg.Backoff) // validated in New
	for {
		started := c.cfg.Clock.Now()
		ep, welcomed, err := c.attempt(ctx)
		if ctx.Err() != nil {
			c.log.Info("disconnected: agent shutting down")
			return nil
		}
		var delay time.Duration
		if welcomed {
			// A stream that was welcomed worked: start the backoff
			// again, so a control plane restart costs each agent one
			// short delay.
			bo.Reset()
			c.endpoints.Connected()
			delay = bo.Next()
		} else if c.endpoints.Failed() {
			delay = bo.Next() // every endpoint failed in turn
		}
		c.log.Warn("disconnected",
			logging.ControlPlaneAddress(ep.Address), // "" when no address resolved
			zap.Error(err),
			zap.Bool("was_welcomed", welcomed),
			zap.Duration("session_duration", c.cfg.Clock.Since(started)),
			zap.Duration("backoff", delay))
		if delay > 0 && backoff.Wait(ctx, c.cfg.Clock, delay) != nil {
			c.log.Info("agent shutting down while waiting to reconnect")
			return nil
		}
	}
}

// attempt connects to the next endpoint and runs one stream on it.
func (c *Client) attempt(ctx context.Context) (endpoint.Endpoint, bool, error) {
	ep, err := c.endpoints.Next(ctx)
	if err != nil {
		return ep, false, err
	}
	log := c.log.With(logging.ControlPlaneAddress(ep.Address))
	if ep.Configured != ep.Address {
		log = log.With(zap.String("configured_address", ep.Configured))
	}
	log.Info("connecting")
	cc, err := c.conn(ep)
	if err != nil {
		return ep, false, err
	}
	welcomed, err := c.session(ctx, flotillav1.NewAgentServiceClient(cc), log)
	return ep, welcomed, err
}

// conn returns a client connection to ep: the previous attempt's when it
// went to the same endpoint (a stream can end on a connection that is
// fine), a new one otherwise.
func (c *Client) conn(ep endpoint.Endpoint) (*grpc.ClientConn, error) {
	if c.cc != nil && c.ccEP == ep {
		return c.cc, nil
	}
	c.closeConn()
	cc, err := dial.Endpoint(ep, c.cfg.TLS, c.cfg.DialOptions...)
	if err != nil {
		return nil, fmt.Errorf("conn: %w", err)
	}
	c.cc, c.ccEP = cc, ep
	return cc, nil
}

func (c *Client) closeConn() {
	if c.cc != nil {
		_ = c.cc.Close()
		c.cc = nil
	}
}
