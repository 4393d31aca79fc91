package run

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errBoom = errors.New("boom")

// untilDone runs until cancelled, closes stopped, and returns ret.
func untilDone(stopped chan<- struct{}, ret error) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return ret
	}
}

func TestAll(t *testing.T) {
	tests := []struct {
		name string
		// other is the task run beside one that waits for cancellation.
		other     func(context.Context) error
		wantErr   error  // errors.Is target; nil when All must return nil
		wantText  string // the returned error starts with it
		wantPanic bool
	}{
		{"an error cancels the rest", func(context.Context) error { return errBoom }, errBoom, "other: boom", false},
		{"a wrapped error keeps its chain", func(context.Context) error { return fmt.Errorf("dialing: %w", errBoom) }, errBoom, "other: dialing: boom", false},
		{"a panic becomes an error", func(context.Context) error { panic("kaboom") }, nil, "other: panic: kaboom", true},
		{"a nil return stops the rest cleanly", func(context.Context) error { return nil }, nil, "", false},
		{"a cancellation not caused by All is an error", func(context.Context) error { return context.Canceled }, context.Canceled, "other: context canceled", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stopped := make(chan struct{})
			err := All(context.Background(), Task{"waiter", untilDone(stopped, nil)}, Task{"other", tt.other})
			select {
			case <-stopped:
			default:
				t.Fatal("the waiting task was not stopped before All returned")
			}
			if tt.wantText == "" {
				if err != nil {
					t.Fatalf("All = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantText) {
				t.Fatalf("All = %v, want an error starting %q", err, tt.wantText)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("All = %v, which is not %v", err, tt.wantErr)
			}
			if IsPanic(err) != tt.wantPanic {
				t.Errorf("IsPanic(%v) = %v, want %v", err, IsPanic(err), tt.wantPanic)
			}
		})
	}
}

func TestAllReturnsOnlyTheFirstError(t *testing.T) {
	first := errors.New("first")
	release := make(chan struct{})
	err := All(context.Background(),
		Task{"a", func(context.Context) error { defer close(release); return first }},
		Task{"b", func(ctx context.Context) error {
			<-release
			<-ctx.Done() // cancelled because of the first error
			return errors.New("second")
		}},
	)
	if !errors.Is(err, first) || !strings.HasPrefix(err.Error(), "a: ") {
		t.Fatalf("All = %v, want a's error", err)
	}
}

// Stopping through the parent context is a clean shutdown, whether a task
// then returns nil or the context's error.
func TestAllParentCancelIsACleanStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a, b := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- All(ctx, Task{"nil", untilDone(a, nil)}, Task{"ctx-err", func(ctx context.Context) error {
			return untilDone(b, ctx.Err())(ctx)
		}})
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("All = %v after cancel, want nil", err)
	}
	<-a
	<-b
}

func TestAllWithoutTasks(t *testing.T) {
	if err := All(context.Background()); err != nil {
		t.Fatalf("All() = %v, want nil", err)
	}
}

func TestSafe(t *testing.T) {
	tests := []struct {
		name      string
		fn        func(context.Context) error
		wantErr   error
		wantPanic bool
	}{
		{"nil passes through", func(context.Context) error { return nil }, nil, false},
		{"an error passes through", func(context.Context) error { return errBoom }, errBoom, false},
		{"a panic is recovered", func(context.Context) error { panic(errBoom) }, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Safe(tt.fn)(context.Background())
			if IsPanic(err) != tt.wantPanic {
				t.Fatalf("Safe(...) = %v, want a panic: %v", err, tt.wantPanic)
			}
			if !tt.wantPanic && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Safe(...) = %v, want %v", err, tt.wantErr)
			}
			var p *PanicError
			if tt.wantPanic && (!errors.As(err, &p) || p.Value != errBoom || len(p.Stack) == 0) {
				t.Fatalf("Safe(...) = %#v, want the panic's value and stack", err)
			}
		})
	}
}
