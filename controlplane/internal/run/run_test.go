package run

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func waitCtx(ctx context.Context) error { <-ctx.Done(); return nil }

func TestFirstErrorCancelsOthers(t *testing.T) {
	boom := errors.New("boom")
	err := All(context.Background(),
		Loop{"waiter", waitCtx},
		Loop{"failer", func(context.Context) error { return boom }},
	)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "failer") {
		t.Fatalf("err = %v, want boom named after its loop", err)
	}
}

func TestPanicBecomesError(t *testing.T) {
	err := All(context.Background(),
		Loop{"waiter", waitCtx},
		Loop{"panicker", func(context.Context) error { panic("kaboom") }},
	)
	if err == nil || !strings.Contains(err.Error(), "panicker: panic: kaboom") {
		t.Fatalf("err = %v, want the panic as an error", err)
	}
}

func TestParentCancelStopsAll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := All(ctx, Loop{"a", waitCtx}, Loop{"b", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}); err != nil {
		t.Fatalf("err = %v, want nil on a clean stop", err)
	}
}
