package lease

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	ttl    = 9 * time.Second
	margin = time.Second
	retry  = 500 * time.Millisecond
	// window is how long after its last successful request a keeper may
	// still trust its lease.
	window = ttl - margin
)

// faultyStore is the SQLite store with renewals that can be made to fail
// or hang, as when the database is away.
type faultyStore struct {
	store.LeaseStore

	mu         sync.Mutex
	renewErr   error // returned instead of renewing when set
	acquireErr error // returned instead of acquiring when set
	hang       bool  // renewals wait for their context to end
	renewals   int
	acquires   int
}

func (f *faultyStore) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (store.Lease, error) {
	f.mu.Lock()
	f.acquires++
	err := f.acquireErr
	f.mu.Unlock()
	if err != nil {
		return store.Lease{}, err
	}
	return f.LeaseStore.AcquireLease(ctx, name, holder, ttl)
}

func (f *faultyStore) RenewLease(ctx context.Context, name, holder string, token int64, ttl time.Duration) (store.Lease, error) {
	f.mu.Lock()
	f.renewals++
	err, hang := f.renewErr, f.hang
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return store.Lease{}, ctx.Err()
	}
	if err != nil {
		return store.Lease{}, err
	}
	return f.LeaseStore.RenewLease(ctx, name, holder, token, ttl)
}

func (f *faultyStore) set(renewErr error, hang bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renewErr, f.hang = renewErr, hang
}

func (f *faultyStore) counts() (acquires, renewals int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acquires, f.renewals
}

func openStore(t *testing.T) *faultyStore {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return &faultyStore{LeaseStore: st}
}

func newKeeper(t *testing.T, st store.LeaseStore, clk clockwork.Clock, wait bool) *Keeper {
	t.Helper()
	k, err := New(Config{Store: st, Name: "controlplane", Holder: "a", TTL: ttl, Margin: margin,
		RetryInterval: retry, Wait: wait, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// running is a keeper's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(k *Keeper) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- k.Run(ctx) }()
	return r
}

// stop cancels Run and returns its error.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
		return nil
	}
}

// advanceUntilDone moves clk by step each time the keeper waits on it,
// until Run returns or limit has passed on clk; it returns Run's error and
// how far clk moved, or ok false if Run was still running at the limit.
func advanceUntilDone(t *testing.T, clk *clockwork.FakeClock, r *running, step, limit time.Duration) (err error, moved time.Duration, ok bool) {
	t.Helper()
	for moved <= limit {
		blocked := make(chan struct{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		go func() {
			if clk.BlockUntilContext(ctx, 1) == nil {
				close(blocked)
			}
		}()
		select {
		case err := <-r.done:
			cancel()
			return err, moved, true
		case <-blocked:
			cancel()
			// A renewal in flight also waits on the clock (its timeout):
			// let it finish, so that fake time does not pass under it.
			time.Sleep(time.Millisecond)
		case <-ctx.Done():
			cancel()
			t.Fatal("the keeper neither waited on its clock nor returned within 10s")
		}
		clk.Advance(step)
		moved += step
	}
	return nil, moved, false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestKeeperRenewsAndReleases(t *testing.T) {
	st := openStore(t)
	clk := clockwork.NewFakeClock()
	k := newKeeper(t, st, clk, false)
	r := start(k)
	<-k.Acquired()
	first, held := k.Lease()
	if !held || first.Token != 1 || first.Holder != "a" {
		t.Fatalf("Lease() = %+v, %v; want a's lease with token 1", first, held)
	}
	for n := 1; n <= 3; n++ {
		if err, _, ok := advanceUntilDone(t, clk, r, ttl/3, ttl/3-1); ok {
			t.Fatalf("Run returned %v while renewing", err)
		}
		waitFor(t, fmt.Sprintf("renewal %d", n), func() bool { _, renewals := st.counts(); return renewals >= n })
	}
	if l, held := k.Lease(); !held || l.Token != first.Token {
		t.Fatalf("after renewals: %+v, %v; want the same token, held", l, held)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	// Released: another holder need not wait for the expiry.
	b, err := st.AcquireLease(context.Background(), "controlplane", "b", ttl)
	if err != nil || b.Token != first.Token+1 {
		t.Fatalf("AcquireLease by b after a stopped = %+v, %v; want token %d", b, err, first.Token+1)
	}
}

// A process that acquired the lease but stops before Run (its ports could
// not be bound) gives it up at once.
func TestKeeperReleaseWithoutRun(t *testing.T) {
	st := openStore(t)
	k := newKeeper(t, st, clockwork.NewFakeClock(), false)
	first, err := k.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	k.Release(context.Background())
	if _, held := k.Lease(); held {
		t.Error("Lease() reports the lease held after Release")
	}
	b, err := st.AcquireLease(context.Background(), "controlplane", "b", time.Minute)
	if err != nil || b.Token != first.Token+1 {
		t.Fatalf("AcquireLease by b after Release = %+v, %v; want token %d", b, err, first.Token+1)
	}
	k.Release(context.Background()) // nothing held: nothing happens
	if l, err := st.AcquireLease(context.Background(), "controlplane", "b", time.Minute); err != nil || l.Token != b.Token {
		t.Fatalf("b's lease after a second Release = %+v, %v; want it untouched", l, err)
	}
}

func TestKeeperFailsFastWhenHeld(t *testing.T) {
	st := openStore(t)
	if _, err := st.AcquireLease(context.Background(), "controlplane", "b", time.Minute); err != nil {
		t.Fatal(err)
	}
	k := newKeeper(t, st, clockwork.NewFakeClock(), false)
	err := k.Run(context.Background())
	if !errors.Is(err, store.ErrLeaseHeld) || !strings.Contains(err.Error(), "held by b") {
		t.Fatalf("Run = %v, want ErrLeaseHeld naming b", err)
	}
	if _, held := k.Lease(); held {
		t.Error("Lease() reports a lease held")
	}
}

func TestKeeperWaitsForHeldLease(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	b, err := st.AcquireLease(ctx, "controlplane", "b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	clk := clockwork.NewFakeClock()
	k := newKeeper(t, st, clk, true)
	r := start(k)
	if err, _, ok := advanceUntilDone(t, clk, r, retry, 3*retry); ok {
		t.Fatalf("Run returned %v while b held the lease", err)
	}
	if acquires, _ := st.counts(); acquires < 3 {
		t.Fatalf("%d attempts to acquire, want one per retry interval", acquires)
	}
	if err := st.ReleaseLease(ctx, "controlplane", "b", b.Token); err != nil {
		t.Fatal(err)
	}
	clk.Advance(retry)
	<-k.Acquired()
	if l, held := k.Lease(); !held || l.Token != b.Token+1 {
		t.Fatalf("Lease() = %+v, %v; want token %d", l, held, b.Token+1)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestKeeperStopsWhenLeaseTaken(t *testing.T) {
	st := openStore(t)
	clk := clockwork.NewFakeClock()
	k := newKeeper(t, st, clk, false)
	r := start(k)
	<-k.Acquired()
	l, _ := k.Lease()
	st.set(fmt.Errorf("store: renew lease: %w", &store.LeaseHeldError{Lease: store.Lease{Name: l.Name, Holder: "b", Token: l.Token + 1}}), false)
	err, _, ok := advanceUntilDone(t, clk, r, ttl/3, ttl)
	if !ok || !errors.Is(err, ErrLost) || !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("Run = %v (returned: %v), want ErrLost wrapping ErrLeaseHeld", err, ok)
	}
	if _, renewals := st.counts(); renewals != 1 {
		t.Errorf("%d renewal attempts, want Run to stop at the first that says the lease moved", renewals)
	}
	if _, held := k.Lease(); held {
		t.Error("Lease() still reports the lease held")
	}
}

// TestKeeperStopsBeforeLeaseCanExpire cuts the keeper off from the
// database (renewals fail, or hang): it keeps trying while its lease is
// safe and stops no later than the window after its last renewal, before
// the lease can expire and be taken elsewhere.
func TestKeeperStopsBeforeLeaseCanExpire(t *testing.T) {
	tests := []struct {
		name        string
		renewErr    error
		hang        bool
		minAttempts int
	}{
		{"renewals fail", fmt.Errorf("store: renew lease: %w: connection refused", store.ErrUnavailable), false, 5},
		{"renewals hang", nil, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			clk := clockwork.NewFakeClock()
			k := newKeeper(t, st, clk, false)
			r := start(k)
			<-k.Acquired()
			st.set(tt.renewErr, tt.hang)
			const step = 100 * time.Millisecond
			err, moved, ok := advanceUntilDone(t, clk, r, step, ttl)
			if !ok || !errors.Is(err, ErrLost) {
				t.Fatalf("Run = %v (returned: %v), want ErrLost", err, ok)
			}
			// The last success was the acquisition at the start.
			if moved < window || moved > window+step {
				t.Errorf("Run returned %s after the last renewal, want within one step after %s (ttl %s)", moved, window, ttl)
			}
			if _, renewals := st.counts(); renewals < tt.minAttempts {
				t.Errorf("%d renewal attempts, want at least %d within the window", renewals, tt.minAttempts)
			}
			if _, held := k.Lease(); held {
				t.Error("Lease() still reports the lease held")
			}
		})
	}
}

// TestKeeperRidesOutShortOutage cuts the keeper off from the database for
// the window less an eighth of the TTL (21 s of a 30 s lease's 24 s window),
// starting just after a renewal and just before the next one is due: it
// keeps its lease and renews it once the database is back. Renewing only
// every third of the TTL, it lost the lease in the second case.
func TestKeeperRidesOutShortOutage(t *testing.T) {
	const step = 100 * time.Millisecond
	outage := window - ttl/8
	tests := []struct {
		name string
		// phase is when the outage starts, from the acquisition.
		phase func(k *Keeper) time.Duration
	}{
		{"starting after a renewal", func(*Keeper) time.Duration { return 0 }},
		{"starting just before a renewal is due", func(k *Keeper) time.Duration { return k.cfg.RenewInterval - step }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			clk := clockwork.NewFakeClock()
			k := newKeeper(t, st, clk, false)
			r := start(k)
			<-k.Acquired()
			if err, _, ok := advanceUntilDone(t, clk, r, step, tt.phase(k)-step); ok {
				t.Fatalf("Run returned %v before the outage", err)
			}
			st.set(fmt.Errorf("store: renew lease: %w: connection refused", store.ErrUnavailable), false)
			if err, moved, ok := advanceUntilDone(t, clk, r, step, outage-step); ok {
				t.Fatalf("Run returned %v %s into a %s outage (window %s)", err, moved, outage, window)
			}
			_, before := st.counts()
			st.set(nil, false)
			if err, _, ok := advanceUntilDone(t, clk, r, step, 2*retry); ok {
				t.Fatalf("Run returned %v after the database came back", err)
			}
			waitFor(t, "a renewal after the outage", func() bool { _, n := st.counts(); return n > before })
			if l, held := k.Lease(); !held || l.Token != 1 {
				t.Fatalf("after the outage: %+v, %v; want the first lease, held", l, held)
			}
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	st := openStore(t)
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no store", Config{Name: "x", Holder: "a"}, "store"},
		{"no name", Config{Store: st, Holder: "a"}, "name"},
		{"no holder", Config{Store: st, Name: "x"}, "holder"},
		{"margin too large", Config{Store: st, Name: "x", Holder: "a", TTL: 9 * time.Second, Margin: 6 * time.Second}, "margin"},
		{"negative retry", Config{Store: st, Name: "x", Holder: "a", RetryInterval: -1}, "retry interval"},
		{"negative renew interval", Config{Store: st, Name: "x", Holder: "a", RenewInterval: -1}, "renew interval"},
		{"renew interval past the window", Config{Store: st, Name: "x", Holder: "a", TTL: 10 * time.Second, RenewInterval: 8 * time.Second}, "renew interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("New = %v, want an error naming %q", err, tt.field)
			}
		})
	}
	k, err := New(Config{Store: st, Name: "x", Holder: NewHolderID()})
	if err != nil || k.cfg.TTL != DefaultTTL || k.cfg.Margin != DefaultTTL/5 || k.cfg.RenewInterval != DefaultTTL/20 || k.cfg.RetryInterval != DefaultTTL/60 {
		t.Fatalf("New with defaults = %+v, %v", k, err)
	}
}
