package backoff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Defaults used when a Config field is zero.
const (
	DefaultInitial    = 500 * time.Millisecond
	DefaultMax        = 30 * time.Second
	DefaultMultiplier = 2.0
	DefaultJitter     = 0.5
)

// Config configures a Backoff. Zero fields take the defaults above.
type Config struct {
	// Initial is the base delay of the first retry.
	Initial time.Duration
	// Max caps every delay, jitter included.
	Max time.Duration
	// Multiplier grows the base delay after each retry; must be >= 1.
	Multiplier float64
	// Jitter is the fraction of the base delay that is randomised away:
	// a delay is uniform in [base*(1-Jitter), base]. 0 < Jitter <= 1.
	// Use NoJitter for deterministic delays.
	Jitter float64
	// Rand returns a number in [0, 1); nil uses math/rand/v2. Tests inject it.
	Rand func() float64
}

// NoJitter, as Config.Jitter, disables jitter (0 would mean "default").
const NoJitter = -1.0

// Backoff hands out successive delays. It is not safe for concurrent use: each
// retry loop owns one.
type Backoff struct {
	cfg     Config
	attempt int
}

// New fills the defaults of cfg, validates it and returns a Backoff.
func New(cfg Config) (*Backoff, error) {
	if cfg.Initial == 0 {
		cfg.Initial = DefaultInitial
	}
	if cfg.Max == 0 {
		cfg.Max = DefaultMax
	}
	if cfg.Multiplier == 0 {
		cfg.Multiplier = DefaultMultiplier
	}
	switch cfg.Jitter {
	case 0:
		cfg.Jitter = DefaultJitter
	case NoJitter:
		cfg.Jitter = 0
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	switch {
	case cfg.Initial < 0:
		return nil, fmt.Errorf("backoff: initial delay %v is negative", cfg.Initial)
	case cfg.Max < cfg.Initial:
		return nil, fmt.Errorf("backoff: max delay %v is below the initial delay %v", cfg.Max, cfg.Initial)
	case cfg.Multiplier < 1:
		return nil, fmt.Errorf("backoff: multiplier %v is below 1", cfg.Multiplier)
	case cfg.Jitter < 0 || cfg.Jitter > 1:
		return nil, fmt.Errorf("backoff: jitter %v is outside [0, 1]", cfg.Jitter)
	}
	return &Backoff{cfg: cfg}, nil
}

// Next returns the delay before the next attempt and advances the sequence.
func (b *Backoff) Next() time.Duration {
	base := b.base()
	b.attempt++
	d := base * (1 - b.cfg.Jitter*b.cfg.Rand())
	return time.Duration(d)
}

// Reset starts the sequence again from the initial delay. Call it once an
// attempt has succeeded (for a stream: once it was healthy).
func (b *Backoff) Reset() { b.attempt = 0 }

// base is the un-jittered delay of the current attempt, capped at Max.
func (b *Backoff) base() float64 {
	d := float64(b.cfg.Initial) * math.Pow(b.cfg.Multiplier, float64(b.attempt))
	// Pow overflows to +Inf after enough attempts; the cap absorbs it.
	return math.Min(d, float64(b.cfg.Max))
}
