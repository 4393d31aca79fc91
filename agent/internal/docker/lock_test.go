package docker

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNameLocks(t *testing.T) {
	l := newNameLocks()
	ctx := t.Context()
	unlockWeb, err := l.lock(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	// Another name is independent.
	unlockAPI, err := l.lock(ctx, "api")
	if err != nil {
		t.Fatalf("lock api while web is held: %v", err)
	}
	unlockAPI()

	// The same name waits, and gives up with its context.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := l.lock(short, "web"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of web: %v, want DeadlineExceeded", err)
	}

	got := make(chan func(), 1)
	go func() {
		unlock, err := l.lock(ctx, "web")
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- unlock
	}()
	select {
	case <-got:
		t.Fatal("web locked twice")
	case <-time.After(20 * time.Millisecond):
	}
	unlockWeb()
	select {
	case unlock := <-got:
		unlock()
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not get the lock after release")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.locks) != 0 {
		t.Errorf("%d locks left in the map", len(l.locks))
	}
}
