package docker

import (
	"context"
	"fmt"
	"sync"
)

// nameLocks serializes work on one container name while letting different
// names proceed in parallel. Waiting honours the caller's context.
type nameLocks struct {
	mu    sync.Mutex
	locks map[string]*nameLock
}

type nameLock struct {
	sem     chan struct{} // holds one token while locked
	waiters int           // holders and waiters; the entry goes at zero
}

func newNameLocks() *nameLocks {
	return &nameLocks{locks: make(map[string]*nameLock)}
}

// lock waits for name's lock and returns its release, or fails when ctx
// ends first.
func (l *nameLocks) lock(ctx context.Context, name string) (func(), error) {
	l.mu.Lock()
	nl, ok := l.locks[name]
	if !ok {
		nl = &nameLock{sem: make(chan struct{}, 1)}
		l.locks[name] = nl
	}
	nl.waiters++
	l.mu.Unlock()

	select {
	case nl.sem <- struct{}{}:
		return func() {
			<-nl.sem
			l.done(name, nl)
		}, nil
	case <-ctx.Done():
		l.done(name, nl)
		return nil, fmt.Errorf("waiting for another command on container %s: %w", name, ctx.Err())
	}
}

// done drops one holder or waiter and forgets the lock once none is left,
// so the map does not grow with every name ever restarted.
func (l *nameLocks) done(name string, nl *nameLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	nl.waiters--
	if nl.waiters == 0 {
		delete(l.locks, name)
	}
}
