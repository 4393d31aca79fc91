package watch

import (
	"context"
	"errors"
	"io"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/exitcode"
)

// RolloutFollower follows one rollout to its end.
type RolloutFollower struct {
	// API is the rollout service.
	API flotillav1.RolloutServiceClient
	// ID is the rollout's ID.
	ID string
	// OnEvent is called with every event once, in sequence order.
	OnEvent func(*flotillav1.RolloutEvent)
	// OnReattach is told that the stream dropped with err and is being
	// opened again (attempt counts from 1); nil says nothing.
	OnReattach func(attempt int, err error)
	// Backoff paces the re-attach attempts; zero: DefaultBackoff.
	Backoff Backoff

	last     int64
	attempts int
}

// LastSequence is the sequence of the last event passed to OnEvent.
func (f *RolloutFollower) LastSequence() int64 { return f.last }

// Run follows the rollout until the server says it is over, and returns it
// as GetRollout answers then. A dropped stream, or a stream that ended
// before the rollout did, is opened again after a backoff, skipping the
// events already seen; only an error that would repeat (NotFound,
// Unauthenticated, ...) or ctx's end stops it.
func (f *RolloutFollower) Run(ctx context.Context) (*flotillav1.Rollout, error) {
	if f.Backoff.Initial == 0 {
		f.Backoff = DefaultBackoff()
	}
	for {
		final, err := f.attach(ctx)
		if final {
			r, gerr := f.get(ctx)
			if gerr == nil && rolloutOver(r) {
				return r, nil
			}
			if gerr != nil {
				err = gerr
			}
		}
		if err := retryAfter(ctx, err, &f.Backoff, &f.attempts, f.OnReattach); err != nil {
			return nil, err
		}
	}
}

// attach opens one watch stream and reads it to its end. final is true
// when the stream ended normally or delivered a final state, so that the
// rollout is to be read; err is why the stream ended otherwise.
func (f *RolloutFollower) attach(ctx context.Context) (final bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := f.API.WatchRollout(ctx, &flotillav1.WatchRolloutRequest{RolloutId: f.ID, AfterSequence: f.last})
	if err != nil {
		return false, err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		ev := resp.GetEvent()
		if ev.GetSequence() <= f.last {
			continue // seen before the stream dropped (an older server ignores after_sequence)
		}
		f.last = ev.GetSequence()
		f.Backoff.Reset()
		if f.OnEvent != nil {
			f.OnEvent(ev)
		}
		if exitcode.RolloutFinal(ev.GetState().GetState()) {
			return true, nil
		}
	}
}

// get reads the rollout, retrying transport failures until ctx ends.
func (f *RolloutFollower) get(ctx context.Context) (*flotillav1.Rollout, error) {
	for {
		resp, err := f.API.GetRollout(ctx, &flotillav1.GetRolloutRequest{RolloutId: f.ID})
		if err == nil {
			return resp.GetRollout(), nil
		}
		if ctx.Err() != nil || !Retryable(err) {
			return nil, err
		}
		if werr := f.Backoff.Wait(ctx); werr != nil {
			return nil, werr
		}
	}
}

// rolloutOver reports whether the server says r ended: a final state this
// version knows, or any state with finished_at set (a newer server's).
func rolloutOver(r *flotillav1.Rollout) bool {
	return r.GetFinishedAt() != nil || exitcode.RolloutFinal(r.GetState())
}
