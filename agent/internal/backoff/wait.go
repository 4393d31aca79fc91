package backoff

import (
	"context"
	"time"

	"github.com/jonboulle/clockwork"
)

// Wait waits for d on clock, or returns ctx.Err() as soon as ctx is done.
func Wait(ctx context.Context, clock clockwork.Clock, d time.Duration) error {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
