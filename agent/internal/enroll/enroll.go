package enroll

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/endpoint"
	"flotilla.dev/agent/internal/statedir"
	"flotilla.dev/pkg/logging"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Defaults for the zero fields of Config.
const (
	// DefaultAttemptTimeout bounds one Register or RenewCertificate call.
	DefaultAttemptTimeout = 30 * time.Second
	// DefaultRenewalBackoffInitial and DefaultRenewalBackoffMax pace
	// renewal retries: a certificate valid for months has time, and a
	// fleet whose control plane is down should not hammer it.
	DefaultRenewalBackoffInitial = time.Second
	DefaultRenewalBackoffMax     = 5 * time.Minute
)

// Config configures an Enroller.
type Config struct {
	// StateDir is where the identity is kept (required).
	StateDir string
	// Endpoints are the control plane's addresses (at least one), the
	// server name override and how to resolve them. Registration tries
	// each endpoint in turn, and so do renewals.
	Endpoints endpoint.Config
	// CAFile and CAPin (SHA-256 of the CA's DER) establish trust for
	// registration; at least one is needed, but only when registering.
	CAFile string
	CAPin  []byte
	// JoinToken or JoinTokenFile: the secret from CreateJoinToken, needed
	// only when registering (first start, or a certificate that expired).
	// The file must not be accessible to group or others.
	JoinToken     string
	JoinTokenFile string
	// FileWait is how long a registration waits for JoinTokenFile and
	// CAFile to exist and hold something, for files another process
	// writes (a control plane's bootstrap files on a shared volume); 0
	// does not wait.
	FileWait time.Duration
	// Hostname and Labels are sent with the registration.
	Hostname string
	Labels   map[string]string

	Logger *zap.Logger
	// Clock checks certificate validity and paces retries; nil is real time.
	Clock clockwork.Clock
	// Backoff paces registration retries after Unavailable; zero fields
	// take the backoff defaults.
	Backoff backoff.Config
	// RenewalBackoff paces renewal retries; zero Initial and Max take
	// DefaultRenewalBackoffInitial and DefaultRenewalBackoffMax, the other
	// zero fields the backoff defaults.
	RenewalBackoff backoff.Config
	// Rand returns a number in [0, 1) that places each renewal in its
	// window (see RenewalTime); nil uses math/rand/v2.
	Rand func() float64
	// AttemptTimeout bounds one Register or RenewCertificate call; default
	// DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// DialOptions are appended to the connection's options (tests: bufconn).
	DialOptions []grpc.DialOption
}

// Enroller loads or obtains the agent's identity.
type Enroller struct {
	cfg   Config
	store *Store
	log   *zap.Logger
	// renewals hands out the endpoint of each renewal attempt.
	renewals *endpoint.Rotation
}

// New fills the defaults of cfg, validates it, opens the state directory and
// returns an Enroller. A state directory, state file or join token file
// that group or others can access is refused (see package statedir). Trust
// and join token are otherwise checked only when a registration is needed,
// so an agent already registered runs without them.
func New(cfg Config) (*Enroller, error) {
	if cfg.Logger == nil {
		return nil, errors.New("enroll: a logger is required")
	}
	if cfg.Endpoints.Logger == nil {
		cfg.Endpoints.Logger = cfg.Logger
	}
	renewals, err := endpoint.New(cfg.Endpoints)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.RenewalBackoff.Initial == 0 {
		cfg.RenewalBackoff.Initial = DefaultRenewalBackoffInitial
	}
	if cfg.RenewalBackoff.Max == 0 {
		cfg.RenewalBackoff.Max = max(DefaultRenewalBackoffMax, cfg.RenewalBackoff.Initial)
	}
	if _, err := backoff.New(cfg.Backoff); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if cfg.FileWait < 0 {
		return nil, fmt.Errorf("config: bootstrap_wait: must not be negative, got %v", cfg.FileWait)
	}
	if _, err := backoff.New(cfg.RenewalBackoff); err != nil {
		return nil, fmt.Errorf("enroll: renewal: %w", err)
	}
	if cfg.JoinTokenFile != "" {
		if err := statedir.CheckSecretFile(cfg.JoinTokenFile, "config: join_token_file:"); err != nil {
			return nil, err
		}
	}
	store, err := OpenStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	return &Enroller{cfg: cfg, store: store, log: cfg.Logger, renewals: renewals}, nil
}

// Identity returns the saved identity if it is usable, or registers.
func (e *Enroller) Identity(ctx context.Context) (*Identity, error) {
	id, err := e.Load()
	switch {
	case err == nil:
		e.log.Info("using saved identity",
			logging.AgentID(id.AgentID),
			zap.String("state_dir", e.store.Dir()),
			zap.String("certificate_serial", id.Serial()),
			zap.Time("certificate_expires_at", id.NotAfter()),
			zap.Duration("certificate_expires_in", id.NotAfter().Sub(e.cfg.Clock.Now()).Round(time.Second)))
		return id, nil
	case errors.Is(err, ErrNotRegistered):
		e.log.Info("agent not registered yet", zap.String("state_dir", e.store.Dir()))
	case errors.Is(err, ErrCertificateExpired):
		e.log.Error("the saved certificate has expired: an expired certificate cannot authenticate, not even to renew it, "+
			"so the agent must register again with a join token (join_token or join_token_file)",
			zap.String("state_dir", e.store.Dir()), zap.Error(err))
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
		return nil, fmt.Errorf("enroll: the saved key in %s: %w", e.store.Dir(), err)
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
		if err := statedir.CheckSecretFile(e.cfg.JoinTokenFile, "config: join_token_file:"); err != nil {
			return "", err
		}
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
