package backoff

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func constRand(v float64) func() float64 { return func() float64 { return v } }

func TestNextGrowsAndCaps(t *testing.T) {
	b, err := New(Config{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: NoJitter})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Errorf("attempt %d: got %v, want %v", i, got, w*time.Millisecond)
		}
	}
}

func TestNextNeverExceedsCapAfterManyAttempts(t *testing.T) {
	b, err := New(Config{Initial: time.Millisecond, Max: 30 * time.Second, Rand: constRand(0)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5000; i++ {
		if d := b.Next(); d > 30*time.Second || d < 0 {
			t.Fatalf("attempt %d: delay %v outside [0, 30s]", i, d)
		}
	}
}

func TestJitterBounds(t *testing.T) {
	tests := []struct {
		name   string
		jitter float64
		rand   float64
		want   time.Duration
	}{
		{"no randomness keeps the base", 0.5, 0, time.Second},
		{"max randomness removes the jitter fraction", 0.5, 0.999999, 500*time.Millisecond + 500*time.Nanosecond},
		{"midpoint", 0.5, 0.5, 750 * time.Millisecond},
		{"full jitter can reach almost zero", 1, 0.999999, time.Microsecond},
		{"disabled jitter ignores rand", NoJitter, 0.9, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(Config{Initial: time.Second, Max: time.Minute, Jitter: tt.jitter, Rand: constRand(tt.rand)})
			if err != nil {
				t.Fatal(err)
			}
			if got := b.Next(); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestJitterStaysWithinBoundsWithRealRandomness(t *testing.T) {
	b, err := New(Config{Initial: time.Second, Max: time.Second}) // base is always 1s
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if d := b.Next(); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("delay %v outside [500ms, 1s]", d)
		}
	}
}

func TestReset(t *testing.T) {
	b, err := New(Config{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: NoJitter})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		b.Next()
	}
	b.Reset()
	if got := b.Next(); got != 100*time.Millisecond {
		t.Errorf("after Reset got %v, want the initial 100ms", got)
	}
}

func TestDefaults(t *testing.T) {
	b, err := New(Config{Jitter: NoJitter})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Next(); got != DefaultInitial {
		t.Errorf("first delay %v, want %v", got, DefaultInitial)
	}
	for i := 0; i < 20; i++ {
		b.Next()
	}
	if got := b.Next(); got != DefaultMax {
		t.Errorf("capped delay %v, want %v", got, DefaultMax)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative initial", Config{Initial: -time.Second}},
		{"max below initial", Config{Initial: time.Minute, Max: time.Second}},
		{"multiplier below one", Config{Multiplier: 0.5}},
		{"jitter above one", Config{Jitter: 1.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestWait(t *testing.T) {
	clock := clockwork.NewFakeClock()
	done := make(chan error)
	go func() { done <- Wait(context.Background(), clock, time.Second) }()
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatalf("Wait returned %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- Wait(ctx, clock, time.Hour) }()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Wait returned %v after cancel, want context.Canceled", err)
	}
}
