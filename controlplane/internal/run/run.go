// Package run runs a service's long-lived loops together: each is a
// func(ctx) error; the first to return cancels the others, a panic becomes
// an error, and All returns once every loop has stopped.
package run

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
)

// Loop is one long-lived part of a service.
type Loop struct {
	Name string
	Run  func(ctx context.Context) error
}

// All runs every loop until ctx ends or one of them returns, then cancels
// the rest and waits for them. It returns the first error, naming its loop.
func All(ctx context.Context, loops ...Loop) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := safeRun(ctx, l)
			if err != nil {
				once.Do(func() { firstErr = err })
			}
			cancel()
		}()
	}
	wg.Wait()
	return firstErr
}

func safeRun(ctx context.Context, l Loop) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: panic: %v\n%s", l.Name, p, debug.Stack())
		}
	}()
	if err := l.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", l.Name, err)
	}
	return nil
}
