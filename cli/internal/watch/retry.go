package watch

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Backoff is the wait between two attempts to re-attach: it starts at
// Initial, doubles up to Max, and resets after an attempt that received
// something.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	next    time.Duration
}

// DefaultBackoff re-attaches after 250ms, then up to every 5s.
func DefaultBackoff() Backoff { return Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second} }

// Wait sleeps the next interval, or returns ctx's error first.
func (b *Backoff) Wait(ctx context.Context) error {
	if b.next == 0 {
		b.next = b.Initial
	}
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, b.Max)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Reset starts again from Initial.
func (b *Backoff) Reset() { b.next = 0 }

// Retryable reports whether a watch that ended with err (the caller's
// context still live) is to be opened again: a transport failure, a
// server that went away or shed the stream. Errors that would only repeat
// (a refused argument, an unknown ID, missing credentials) are final.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, io.EOF) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The caller's context (checked by the caller) or a dial timeout.
		return true
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.Unauthenticated, codes.PermissionDenied,
		codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented, codes.AlreadyExists:
		return false
	}
	return true
}

// retryAfter decides, after an attach that did not end the watch, whether
// to open the stream again: ctx's end, or an error that would repeat,
// stops the watch (returned); otherwise attempt is counted, onReattach
// told, and b's next wait taken before nil is returned.
func retryAfter(ctx context.Context, err error, b *Backoff, attempt *int, onReattach func(int, error)) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && !Retryable(err) {
		return err
	}
	*attempt++
	if onReattach != nil {
		onReattach(*attempt, err)
	}
	return b.Wait(ctx)
}
