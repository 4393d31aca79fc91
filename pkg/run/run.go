package run

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
)

// Task is one long-lived part of a program.
type Task struct {
	// Name names the task in the error it returns ("grpc", "renewal").
	Name string
	// Run runs until ctx is cancelled, then returns nil (or ctx's error),
	// or returns an error when it cannot go on.
	Run func(ctx context.Context) error
}

// All runs the tasks concurrently until ctx ends or one of them returns,
// then cancels the others and waits for every one. It returns the first
// error, prefixed with its task's name, or nil when every task stopped
// cleanly: returning nil, or ctx's cancellation once the tasks were told to
// stop. A task that returns nil before then still stops the others: a
// long-lived task that ends on its own leaves nothing worth running.
func All(ctx context.Context, tasks ...Task) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for _, t := range tasks {
		wg.Go(func() {
			err := Safe(t.Run)(ctx)
			if err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
				once.Do(func() { firstErr = fmt.Errorf("%s: %w", t.Name, err) })
			}
			cancel()
		})
	}
	wg.Wait()
	return firstErr
}

// PanicError is the error a task's panic is turned into.
type PanicError struct {
	// Value is what the task panicked with.
	Value any
	// Stack is the goroutine's stack where it panicked.
	Stack []byte
}

// Error says what the task panicked with, and where.
func (e *PanicError) Error() string {
	return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack)
}

// Safe wraps fn so that a panic is returned as a *PanicError.
func Safe(fn func(ctx context.Context) error) func(ctx context.Context) error {
	return func(ctx context.Context) (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = &PanicError{Value: v, Stack: debug.Stack()}
			}
		}()
		return fn(ctx)
	}
}

// IsPanic reports whether err came from a recovered panic.
func IsPanic(err error) bool {
	var p *PanicError
	return errors.As(err, &p)
}
