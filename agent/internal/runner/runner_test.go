package runner

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// blockUntilDone is a task that runs until cancelled and reports that it was.
func blockUntilDone(stopped chan<- struct{}) Task {
	return func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return nil
	}
}

func TestFirstErrorCancelsTheRest(t *testing.T) {
	boom := errors.New("boom")
	stopped := make(chan struct{})
	err := Run(context.Background(),
		blockUntilDone(stopped),
		func(context.Context) error { return boom },
	)
	if !errors.Is(err, boom) {
		t.Fatalf("Run returned %v, want %v", err, boom)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the other task was not cancelled before Run returned")
	}
}

func TestOnlyTheFirstErrorIsReturned(t *testing.T) {
	first := errors.New("first")
	release := make(chan struct{})
	err := Run(context.Background(),
		func(context.Context) error { defer close(release); return first },
		func(ctx context.Context) error {
			<-release
			<-ctx.Done() // cancelled because of the first error
			return errors.New("second")
		},
	)
	if !errors.Is(err, first) {
		t.Fatalf("Run returned %v, want %v", err, first)
	}
}

func TestPanicBecomesError(t *testing.T) {
	stopped := make(chan struct{})
	err := Run(context.Background(),
		blockUntilDone(stopped),
		func(context.Context) error { panic("kaboom") },
	)
	if !IsPanic(err) {
		t.Fatalf("Run returned %v, want a panic error", err)
	}
	if !strings.Contains(err.Error(), "kaboom") {
		t.Errorf("error %q does not carry the panic value", err)
	}
	<-stopped
}

func TestCancelledContextIsACleanShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a, b := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() { done <- Run(ctx, blockUntilDone(a), blockUntilDone(b)) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	<-a
	<-b
}

func TestAllTasksFinishing(t *testing.T) {
	tests := []struct {
		name  string
		tasks []Task
	}{
		{"no tasks", nil},
		{"tasks that return nil", []Task{
			func(context.Context) error { return nil },
			func(context.Context) error { return nil },
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Run(context.Background(), tt.tasks...); err != nil {
				t.Fatalf("Run returned %v, want nil", err)
			}
		})
	}
}
