package run

import (
	"context"
	"time"
)

// Every calls fn every interval until ctx ends, then returns nil: the body
// of a periodic Task (a sweep, a flush, a health probe). The first call is
// one interval after Every starts; a call that outlasts the interval delays
// the next one rather than overlapping it.
func Every(ctx context.Context, interval time.Duration, fn func(ctx context.Context)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			fn(ctx)
		}
	}
}
