package ratelimit

import (
	"container/list"
	"errors"
	"sync"
	"time"
)

// Config configures a Limiter.
type Config struct {
	// Rate is how many events a key earns back per Per.
	Rate int
	Per  time.Duration
	// Burst is how many events a key may spend at once (the bucket's size).
	Burst int
	// MaxKeys bounds the table (default 10000).
	MaxKeys int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Limiter limits events per key. It is safe for concurrent use.
type Limiter struct {
	cfg      Config
	interval time.Duration // time to earn one token

	mu    sync.Mutex
	keys  map[string]*list.Element
	order *list.List // front: most recently used
}

type bucket struct {
	key    string
	tokens float64
	at     time.Time
	// refused counts the events refused since the last one allowed.
	refused int
}

// Decision is the answer for one event.
type Decision struct {
	Allowed bool
	// RetryAfter is when the next event of this key would be allowed
	// (when refused).
	RetryAfter time.Duration
	// FirstRefusal is set for the first event refused after one was
	// allowed, so that callers log a burst of refusals once.
	FirstRefusal bool
	// RefusedBefore is, for an allowed event, how many were refused since
	// the previous allowed one.
	RefusedBefore int
}

// New validates cfg and returns a Limiter.
func New(cfg Config) (*Limiter, error) {
	if cfg.Rate <= 0 || cfg.Per <= 0 {
		return nil, errors.New("ratelimit: rate and period must be positive")
	}
	if cfg.Burst < 1 {
		return nil, errors.New("ratelimit: burst must be at least 1")
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 10000
	}
	if cfg.MaxKeys < 1 {
		return nil, errors.New("ratelimit: MaxKeys must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{
		cfg: cfg, interval: cfg.Per / time.Duration(cfg.Rate),
		keys: make(map[string]*list.Element), order: list.New(),
	}, nil
}

// Allow spends one token of key's bucket if it has one.
func (l *Limiter) Allow(key string) Decision {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	b.tokens = min(float64(l.cfg.Burst), b.tokens+float64(now.Sub(b.at))/float64(l.interval))
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		d := Decision{Allowed: true, RefusedBefore: b.refused}
		b.refused = 0
		return d
	}
	b.refused++
	wait := time.Duration((1 - b.tokens) * float64(l.interval))
	return Decision{RetryAfter: max(wait, time.Millisecond), FirstRefusal: b.refused == 1}
}

// bucket returns key's bucket, creating a full one (and evicting the least
// recently used key when the table is full). The caller holds l.mu.
func (l *Limiter) bucket(key string, now time.Time) *bucket {
	if el, ok := l.keys[key]; ok {
		l.order.MoveToFront(el)
		return el.Value.(*bucket)
	}
	if l.order.Len() >= l.cfg.MaxKeys {
		oldest := l.order.Back()
		l.order.Remove(oldest)
		delete(l.keys, oldest.Value.(*bucket).key)
	}
	b := &bucket{key: key, tokens: float64(l.cfg.Burst), at: now}
	l.keys[key] = l.order.PushFront(b)
	return b
}

// Len returns how many keys the limiter remembers.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}
