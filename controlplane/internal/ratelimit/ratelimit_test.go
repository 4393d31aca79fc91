package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newLimiter(t *testing.T, maxKeys int) (*Limiter, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	l, err := New(Config{Rate: 5, Per: time.Minute, Burst: 10, MaxKeys: maxKeys, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return l, c
}

func TestBurstThenRate(t *testing.T) {
	l, c := newLimiter(t, 0)
	for i := range 10 {
		if d := l.Allow("10.0.0.1"); !d.Allowed {
			t.Fatalf("event %d of the burst refused", i)
		}
	}
	d := l.Allow("10.0.0.1")
	if d.Allowed || !d.FirstRefusal || d.RetryAfter != 12*time.Second {
		t.Fatalf("11th event = %+v, want refused first, retry after 12s", d)
	}
	if d := l.Allow("10.0.0.1"); d.Allowed || d.FirstRefusal {
		t.Fatalf("12th event = %+v, want refused, not first", d)
	}
	// Another address has its own bucket.
	if d := l.Allow("10.0.0.2"); !d.Allowed {
		t.Fatal("another address refused")
	}
	c.add(12 * time.Second)
	d = l.Allow("10.0.0.1")
	if !d.Allowed || d.RefusedBefore != 2 {
		t.Fatalf("after 12s = %+v, want allowed with 2 refused before", d)
	}
	if d := l.Allow("10.0.0.1"); d.Allowed {
		t.Fatal("a second event within the same 12s allowed")
	}
	// A long pause refills to the burst, not beyond.
	c.add(time.Hour)
	for i := range 10 {
		if !l.Allow("10.0.0.1").Allowed {
			t.Fatalf("event %d after a long pause refused", i)
		}
	}
	if l.Allow("10.0.0.1").Allowed {
		t.Fatal("bucket refilled beyond its burst")
	}
}

func TestBoundedKeys(t *testing.T) {
	l, _ := newLimiter(t, 3)
	for i := range 100 {
		l.Allow(fmt.Sprintf("10.0.0.%d", i))
	}
	if n := l.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	// The most recently used keys are kept.
	for range 8 { // with the loop's event: 9 of its 10 spent
		l.Allow("10.0.0.99")
	}
	l.Allow("10.0.0.1") // evicts the least recently used (10.0.0.97)
	if d := l.Allow("10.0.0.99"); !d.Allowed {
		t.Fatal("a recently used key lost its bucket state early")
	}
	if d := l.Allow("10.0.0.99"); d.Allowed {
		t.Fatal("10.0.0.99 should have spent its burst")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{{}, {Rate: 1, Per: time.Second}, {Rate: 1, Per: time.Second, Burst: 1, MaxKeys: -1}, {Rate: -1, Per: time.Second, Burst: 1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestConcurrent(t *testing.T) {
	l, _ := newLimiter(t, 50)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				l.Allow(fmt.Sprintf("k%d", (g*1000+i)%200))
			}
		}()
	}
	wg.Wait()
	if l.Len() > 50 {
		t.Fatalf("Len = %d, above the bound", l.Len())
	}
}
