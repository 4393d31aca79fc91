package lease

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
)

// Clock is the local clock the keeper schedules renewals and measures its
// safe window on. Readings must carry Go's monotonic clock (the real
// clock's do), so that a wall-clock step cannot stretch the window.
type Clock = clockwork.Clock

// DefaultTTL is the lease's TTL when Config.TTL is 0.
const DefaultTTL = 10 * time.Second

// Config says which lease to keep and how.
type Config struct {
	// Store keeps the lease.
	Store store.LeaseStore
	// Name is the lease's name (the work it guards), e.g. "controlplane".
	Name string
	// Holder identifies this process; unique per process start (see
	// NewHolderID). Required.
	Holder string
	// TTL is how long each acquisition or renewal holds the lease;
	// DefaultTTL when 0.
	TTL time.Duration
	// Margin is how long before the lease could expire the keeper gives up
	// when it cannot renew; TTL/5 when 0. It covers the time the process
	// needs to stop driving work, and clock rate differences.
	Margin time.Duration
	// Wait makes Acquire wait, retrying every RetryInterval, while another
	// holder has the lease (or the store is unavailable); without it,
	// Acquire fails at once, naming the holder.
	Wait bool
	// RenewInterval is how long after a successful request the keeper
	// renews; TTL/20 when 0. The window counts from the last success, so
	// an outage that starts just before a renewal is due is ridden out
	// only if it is shorter than TTL - Margin - RenewInterval -
	// RetryInterval: renewing often keeps that close to TTL - Margin.
	RenewInterval time.Duration
	// RetryInterval is the pause between attempts to acquire a held lease,
	// and between renewals retried after a transient error; TTL/60 when 0.
	RetryInterval time.Duration
	// Clock is the local clock; the process's when nil.
	Clock Clock
	// Logger receives acquisitions and losses; nothing is logged when nil.
	Logger *zap.Logger
}

// Keeper keeps one lease; see the package comment. Its methods are safe for
// concurrent use, and Run is a long-lived loop for the run group.
type Keeper struct {
	cfg      Config
	acquired chan struct{}

	mu    sync.Mutex
	lease store.Lease
	held  bool
	// validUntil is when, on the local clock, the keeper stops trusting
	// its lease: the start of the last successful request plus TTL minus
	// Margin.
	validUntil time.Time
}

// New validates cfg, fills its defaults and returns a keeper that holds
// nothing yet.
func New(cfg Config) (*Keeper, error) {
	if cfg.Store == nil {
		return nil, errors.New("lease keeper: store: required")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Margin == 0 {
		cfg.Margin = cfg.TTL / 5
	}
	if cfg.RenewInterval == 0 {
		cfg.RenewInterval = cfg.TTL / 20
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = cfg.TTL / 60
	}
	if err := store.ValidateLeaseRequest(cfg.Name, cfg.Holder, cfg.TTL); err != nil {
		return nil, fmt.Errorf("lease keeper: %w", err)
	}
	switch {
	case cfg.Margin < 0 || cfg.Margin >= cfg.TTL*2/3:
		return nil, fmt.Errorf("lease keeper: margin: %s must be positive and under two thirds of the ttl (%s)", cfg.Margin, cfg.TTL)
	case cfg.RenewInterval < 0 || cfg.RenewInterval >= cfg.TTL-cfg.Margin:
		return nil, fmt.Errorf("lease keeper: renew interval: %s must be positive and under the ttl less the margin (%s)", cfg.RenewInterval, cfg.TTL-cfg.Margin)
	case cfg.RetryInterval < 0:
		return nil, fmt.Errorf("lease keeper: retry interval: %s is negative", cfg.RetryInterval)
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	cfg.Logger = cfg.Logger.With(zap.String("lease", cfg.Name), zap.String("holder", cfg.Holder))
	return &Keeper{cfg: cfg, acquired: make(chan struct{})}, nil
}

// NewHolderID returns an ID for this process start: host name, PID and a
// random part, so that a restarted process is a new holder.
func NewHolderID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Lease returns the lease as last acquired or renewed, and whether the
// keeper still trusts it.
func (k *Keeper) Lease() (store.Lease, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lease, k.held && k.cfg.Clock.Now().Before(k.validUntil)
}

// Acquired is closed once the lease is first acquired.
func (k *Keeper) Acquired() <-chan struct{} { return k.acquired }

// record stores a lease acquired or renewed by a request sent at start.
func (k *Keeper) record(l store.Lease, start time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	first := !k.held
	k.lease, k.held = l, true
	k.validUntil = start.Add(k.cfg.TTL - k.cfg.Margin)
	if first {
		close(k.acquired)
	}
}

// drop marks the lease as no longer held.
func (k *Keeper) drop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.held = false
}
