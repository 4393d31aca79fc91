package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// leaderUnderTest runs a Leader and records its changes.
type leaderUnderTest struct {
	*Leader
	st   *faultyStore
	run  *running
	mu   sync.Mutex
	seen []bool

	stopOnce sync.Once
	stopErr  error
}

// stop ends Run (once) and returns its error.
func (lt *leaderUnderTest) stop(t *testing.T) error {
	lt.stopOnce.Do(func() { lt.stopErr = lt.run.stop(t) })
	return lt.stopErr
}

func startLeader(t *testing.T, st *faultyStore, holder string) *leaderUnderTest {
	t.Helper()
	l, err := NewLeader(Config{Store: st, Name: "fleet", Holder: holder, TTL: 600 * time.Millisecond, RetryInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lt := &leaderUnderTest{Leader: l, st: st}
	l.OnChange(func(leading bool) {
		lt.mu.Lock()
		lt.seen = append(lt.seen, leading)
		lt.mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	lt.run = &running{cancel: cancel, done: make(chan error, 1)}
	go func() { lt.run.done <- l.Run(ctx) }()
	t.Cleanup(func() { _ = lt.stop(t) })
	return lt
}

func (lt *leaderUnderTest) leading() bool { return lt.Leading() }

func (lt *leaderUnderTest) changes() []bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return slices.Clone(lt.seen)
}

// TestLeaderStepsDownAndLeadsAgain: of two leaders on one lease, one leads;
// when it cannot reach the store it stops leading without Run returning,
// the other takes over once the lease expired, and the first leads again
// after the second released the lease.
func TestLeaderStepsDownAndLeadsAgain(t *testing.T) {
	base := openStore(t)
	a := startLeader(t, base, "a")
	waitFor(t, "a to lead", a.leading)
	b := startLeader(t, &faultyStore{LeaseStore: base.LeaseStore}, "b")
	waitFor(t, "b to try the held lease twice", func() bool { n, _ := b.st.counts(); return n >= 2 })
	if b.leading() {
		t.Fatal("b leads while a holds the lease")
	}
	unreachable := fmt.Errorf("store: %w: connection refused", store.ErrUnavailable)
	a.st.mu.Lock()
	a.st.renewErr, a.st.acquireErr = unreachable, unreachable
	a.st.mu.Unlock()
	waitFor(t, "b to take over", b.leading)
	if a.leading() {
		t.Fatal("a still leads after b took the lease over")
	}
	select {
	case err := <-a.run.done:
		t.Fatalf("a's Run returned %v after losing the lease, want it to keep trying", err)
	default:
	}
	a.st.mu.Lock()
	a.st.renewErr, a.st.acquireErr = nil, nil
	a.st.mu.Unlock()
	if err := b.stop(t); err != nil {
		t.Fatalf("b's Run = %v", err)
	}
	waitFor(t, "a to lead again", a.leading)
	if got := a.changes(); !slices.Equal(got, []bool{true, false, true}) {
		t.Errorf("a's changes = %v, want lead, step down, lead", got)
	}
	if got := b.changes(); !slices.Equal(got, []bool{true, false}) {
		t.Errorf("b's changes = %v, want lead, step down", got)
	}
}

// TestLeaderAcquireFirstTerm: Acquire takes the lease at once (and fails,
// naming the holder, when another has it); Run keeps that first term
// without acquiring again; Release gives up a first term Run never kept.
func TestLeaderAcquireFirstTerm(t *testing.T) {
	st := openStore(t)
	other, err := NewLeader(Config{Store: st, Name: "replica/x", Holder: "other", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := NewLeader(Config{Store: st, Name: "replica/x", Holder: "me", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(context.Background()); !errors.Is(err, store.ErrLeaseHeld) || !strings.Contains(err.Error(), "other") {
		t.Fatalf("Acquire of a held lease = %v, want ErrLeaseHeld naming other", err)
	}
	other.Release(context.Background())
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatalf("Acquire after other released = %v", err)
	}
	before, _ := st.counts()
	var terms []bool
	l.OnChange(func(leading bool) { terms = append(terms, leading) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	waitFor(t, "Run to keep the first term", l.Leading)
	if after, _ := st.counts(); after != before {
		t.Errorf("Run acquired %d more times, want it to keep the term Acquire took", after-before)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if !slices.Equal(terms, []bool{true, false}) {
		t.Errorf("changes = %v, want one term", terms)
	}
	if _, err := st.AcquireLease(context.Background(), "replica/x", "third", time.Minute); err != nil {
		t.Errorf("the lease after Run ended: %v, want it released", err)
	}
}
