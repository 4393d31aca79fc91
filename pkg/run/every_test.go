package run

import (
	"context"
	"testing"
	"time"
)

// TestEvery checks that Every calls fn repeatedly with its own context and
// returns nil once that context ends, calling fn no more after that.
func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan context.Context)
	done := make(chan error, 1)
	go func() {
		done <- Every(ctx, time.Millisecond, func(c context.Context) { calls <- c })
	}()
	for range 3 {
		if c := <-calls; c != ctx {
			t.Fatal("fn was not given Every's context")
		}
	}
	cancel()
	// A tick may already be in progress: take its call so that Every can
	// see the cancellation.
	for {
		select {
		case <-calls:
			continue
		case err := <-done:
			if err != nil {
				t.Fatalf("Every = %v, want nil", err)
			}
			return
		}
	}
}

// TestEveryStopsBeforeFirstTick checks that a context already ended stops
// Every without any call.
func TestEveryStopsBeforeFirstTick(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Every(ctx, time.Hour, func(context.Context) { t.Error("fn called after ctx ended") })
	if err != nil {
		t.Fatalf("Every = %v, want nil", err)
	}
}
