// Package runner runs the agent's long-lived loops together.
//
// Every loop is a Task: it runs until its context is cancelled (then returns
// nil) or until it fails. The first failure cancels every other task, so the
// agent never keeps running half-alive; a panic in a task becomes an error
// instead of killing the process without a log line.
package runner

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
)

// Task is a long-lived loop. It returns nil when its context is cancelled, or
// an error when it cannot go on.
type Task func(ctx context.Context) error

// PanicError is the error a Task's panic is turned into.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack)
}

// Run runs the tasks concurrently and waits for all of them. The first task to
// return an error cancels the context of the others, and Run returns that
// error. If every task returns nil, Run returns nil; when ctx is cancelled the
// tasks are expected to return nil, so a normal shutdown is not an error.
func Run(ctx context.Context, tasks ...Task) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for _, task := range tasks {
		wg.Go(func() {
			if err := Safe(task)(ctx); err != nil {
				once.Do(func() {
					firstErr = err
					cancel()
				})
			}
		})
	}
	wg.Wait()
	return firstErr
}

// Safe wraps a task so that a panic is returned as a *PanicError.
func Safe(task Task) Task {
	return func(ctx context.Context) (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = &PanicError{Value: v, Stack: debug.Stack()}
			}
		}()
		return task(ctx)
	}
}

// IsPanic reports whether err came from a recovered panic.
func IsPanic(err error) bool {
	var p *PanicError
	return errors.As(err, &p)
}
