// Package enroll gives the agent its identity: on first start it makes a key,
// registers with a join token over server-authenticated TLS and keeps the
// certificate, CA bundle and agent ID in its state directory; on later starts
// it loads them and skips registration.
package enroll

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// DefaultAttemptTimeout bounds one Register call.
const DefaultAttemptTimeout = 30 * time.Second

// Config configures an Enroller.
type Config struct {
	// StateDir is where the identity is kept (required).
	StateDir string
	// Address is the control plane's host:port (required).
	Address string
	// ServerName is the name the control plane's certificate must carry
	// (required; the host of Address unless overridden).
	ServerName string
	// CAFile and CAPin (SHA-256 of the CA's DER) establish trust for
	// registration; at least one is needed, but only when registering.
	CAFile string
	CAPin  []byte
	// JoinToken or JoinTokenFile: the secret from CreateJoinToken, needed
	// only when registering.
	JoinToken     string
	JoinTokenFile string
	// Hostname and Labels are sent with the registration.
	Hostname string
	Labels   map[string]string

	Logger *zap.Logger
	// Clock checks certificate validity and paces retries; nil is real time.
	Clock clockwork.Clock
	// Backoff paces retries after Unavailable; zero fields take defaults.
	Backoff backoff.Config
	// AttemptTimeout bounds one Register call; default DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// DialOptions are appended to the connection's options (tests: bufconn).
	DialOptions []grpc.DialOption
}

// Enroller loads or obtains the agent's identity.
type Enroller struct {
	cfg   Config
	store *Store
	log   *zap.Logger
}

// New fills the defaults of cfg, validates it, opens the state directory and
// returns an Enroller. Trust and join token are checked only when a
// registration is needed, so an agent already registered runs without them.
func New(cfg Config) (*Enroller, error) {
	switch {
	case cfg.Logger == nil:
		return nil, errors.New("enroll: a logger is required")
	case cfg.Address == "":
		return nil, errors.New("enroll: the control plane address is required")
	case cfg.ServerName == "":
		return nil, errors.New("enroll: the control plane server name is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if _, err := backoff.New(cfg.Backoff); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	store, err := OpenStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	return &Enroller{cfg: cfg, store: store, log: cfg.Logger}, nil
}

// Identity returns the saved identity if it is usable, or registers.
func (e *Enroller) Identity(ctx context.Context) (*Identity, error) {
	id, err := e.Load()
	switch {
	case err == nil:
		e.log.Info("using saved identity",
			zap.String("agent_id", id.AgentID),
			zap.String("state_dir", e.store.Dir()),
			zap.Time("certificate_expires_at", id.NotAfter()),
			// There is no renewal RPC yet: an expired certificate needs a
			// new registration, so make the remaining time visible.
			zap.Duration("certificate_expires_in", id.NotAfter().Sub(e.cfg.Clock.Now()).Round(time.Second)))
		return id, nil
	case errors.Is(err, ErrNotRegistered):
		e.log.Info("agent not registered yet", zap.String("state_dir", e.store.Dir()))
	default:
		e.log.Warn("saved identity is unusable, registering again", zap.Error(err))
	}
	id, regErr := e.Register(ctx)
	if regErr != nil && !errors.Is(err, ErrNotRegistered) {
		// Say why registration was needed at all.
		return nil, fmt.Errorf("%w (registration was needed because the saved identity is unusable: %v)", regErr, err)
	}
	return id, regErr
}

// Load reads and checks the saved identity. It returns ErrNotRegistered when
// there is none.
func (e *Enroller) Load() (*Identity, error) {
	f, err := e.store.load()
	if err != nil {
		if errors.Is(err, ErrNotRegistered) {
			return nil, err
		}
		return nil, fmt.Errorf("enroll: reading %s: %w", e.store.Dir(), err)
	}
	key, err := parseKey(f.keyPEM)
	if err != nil {
		return nil, fmt.Errorf("enroll: %s: %w", KeyFile, err)
	}
	id, err := newIdentity(f.agentID, key, f.certPEM, f.caPEM, e.cfg.Clock.Now())
	if err != nil {
		return nil, fmt.Errorf("enroll: saved identity in %s: %w", e.store.Dir(), err)
	}
	return id, nil
}

// joinToken returns the configured join token.
func (e *Enroller) joinToken() (string, error) {
	if e.cfg.JoinTokenFile != "" {
		data, err := os.ReadFile(e.cfg.JoinTokenFile)
		if err != nil {
			return "", fmt.Errorf("config: join_token_file: %w", err)
		}
		token := strings.TrimSpace(string(data))
		if token == "" {
			return "", fmt.Errorf("config: join_token_file: %s is empty", e.cfg.JoinTokenFile)
		}
		return token, nil
	}
	if e.cfg.JoinToken == "" {
		return "", errors.New("config: join_token or join_token_file is required to register " +
			"(the agent has no saved identity in " + e.store.Dir() + "); create one with FleetService.CreateJoinToken")
	}
	return e.cfg.JoinToken, nil
}
