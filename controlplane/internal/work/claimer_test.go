package work

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
)

// fakeWork is a set of pieces of work: each runs until finished (or its
// context ends), recording what it was started with.
type fakeWork struct {
	mu         sync.Mutex
	candidates []string
	running    map[string]store.Lease
	starts     map[string]int
	stopped    map[string]int // returned because their context ended
	finish     map[string]chan struct{}
	lists      int
}

func newFakeWork(ids ...string) *fakeWork {
	w := &fakeWork{candidates: ids, running: map[string]store.Lease{}, starts: map[string]int{},
		stopped: map[string]int{}, finish: map[string]chan struct{}{}}
	for _, id := range ids {
		w.finish[id] = make(chan struct{})
	}
	return w
}

func (w *fakeWork) list(context.Context) ([]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lists++
	return append([]string(nil), w.candidates...), nil
}

func (w *fakeWork) start(ctx context.Context, id string, l store.Lease) {
	w.mu.Lock()
	w.running[id], w.starts[id] = l, w.starts[id]+1
	fin := w.finish[id]
	w.mu.Unlock()
	select {
	case <-fin:
		w.mu.Lock()
		w.candidates = remove(w.candidates, id)
	case <-ctx.Done():
		w.mu.Lock()
		w.stopped[id]++
	}
	delete(w.running, id)
	w.mu.Unlock()
}

func remove(ids []string, id string) []string {
	out := ids[:0]
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

func (w *fakeWork) done(id string) { close(w.finish[id]) }

// lease returns the lease a piece runs under, if it runs.
func (w *fakeWork) lease(id string) (store.Lease, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l, ok := w.running[id]
	return l, ok
}

func (w *fakeWork) counts(id string) (starts, stopped int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.starts[id], w.stopped[id]
}

// longTTL is the leases' TTL in tests where no lease is lost: long enough
// that a loaded machine never makes a holder step down.
const longTTL = 30 * time.Second

// runClaimer runs a claimer until the test ends.
func runClaimer(t *testing.T, c *Claimer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newClaimer(t *testing.T, st store.LeaseStore, holder string, w *fakeWork, ttl time.Duration, m *Metrics) *Claimer {
	t.Helper()
	c, err := New(Config{Store: st, Kind: "rollout", Holder: holder, TTL: ttl, ClaimInterval: 50 * time.Millisecond,
		Candidates: w.list, Start: w.start, Metrics: m, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewValidates(t *testing.T) {
	w := newFakeWork()
	base := Config{Store: nil, Kind: "rollout", Holder: "a", Candidates: w.list, Start: w.start}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"store", func(*Config) {}, "store: required"},
		{"kind", func(c *Config) { c.Store, c.Kind = (*pausable)(nil), "" }, "kind: required"},
		{"holder", func(c *Config) { c.Store, c.Holder = (*pausable)(nil), "" }, "holder: required"},
		{"margin", func(c *Config) { c.Store, c.TTL, c.Margin = (*pausable)(nil), time.Second, time.Second }, "margin"},
	} {
		cfg := base
		tc.edit(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

func TestClaimerDrivesAndReleases(t *testing.T) {
	forEachDriver(t, func(t *testing.T, a, b store.Store) {
		ctx := context.Background()
		reg := prometheus.NewRegistry()
		m := NewMetrics(reg)
		w := newFakeWork("ro-1", "ro-2")
		c := newClaimer(t, a, "holder-a", w, longTTL, m)
		runClaimer(t, c)
		waitFor(t, "both pieces started", func() bool {
			_, ok1 := w.lease("ro-1")
			_, ok2 := w.lease("ro-2")
			return ok1 && ok2
		})
		if got := c.Held(); len(got) != 2 || got[0] != "ro-1" || got[1] != "ro-2" {
			t.Fatalf("Held() = %v, want [ro-1 ro-2]", got)
		}
		l, _ := w.lease("ro-1")
		f, ok := c.Fence("ro-1")
		if !ok || *f != (store.Fence{Name: "rollout/ro-1", Holder: "holder-a", Token: 1}) || l.Token != 1 {
			t.Fatalf("Fence(ro-1) = %+v, %v (started with %+v); want rollout/ro-1 of holder-a, token 1", f, ok, l)
		}
		// Another replica cannot take a driven piece.
		if _, err := b.AcquireLease(ctx, "rollout/ro-1", "holder-b", time.Minute); !errors.Is(err, store.ErrLeaseHeld) {
			t.Fatalf("AcquireLease by b while a drives ro-1 = %v, want ErrLeaseHeld", err)
		}
		w.done("ro-1")
		waitFor(t, "ro-1 forgotten", func() bool { _, ok := c.Fence("ro-1"); return !ok })
		// Released when it finished: no wait for the expiry.
		got, err := b.AcquireLease(ctx, "rollout/ro-1", "holder-b", time.Minute)
		if err != nil || got.Token != 2 {
			t.Fatalf("AcquireLease by b after ro-1 finished = %+v, %v; want token 2", got, err)
		}
		if starts, _ := w.counts("ro-1"); starts != 1 {
			t.Errorf("ro-1 started %d times, want once", starts)
		}
		if v := testutil.ToFloat64(m.held.WithLabelValues("rollout")); v != 1 {
			t.Errorf("leases held = %v, want 1 (ro-2)", v)
		}
		if v := testutil.ToFloat64(m.claims.WithLabelValues("rollout")); v != 2 {
			t.Errorf("claims = %v, want 2", v)
		}
		if v := testutil.ToFloat64(m.takeovers.WithLabelValues("rollout")); v != 0 {
			t.Errorf("takeovers = %v, want 0", v)
		}
	})
}

func TestClaimerWaitsForHeldWorkAndTakesItOver(t *testing.T) {
	forEachDriver(t, func(t *testing.T, a, b store.Store) {
		ctx := context.Background()
		other, err := b.AcquireLease(ctx, "rollout/ro-1", "holder-b", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		m := NewMetrics(prometheus.NewRegistry())
		w := newFakeWork("ro-1")
		c := newClaimer(t, a, "holder-a", w, longTTL, m)
		runClaimer(t, c)
		waitFor(t, "a's first claim pass", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.lists > 0 })
		ok, err := c.Claim(ctx, "ro-1")
		if ok || !errors.Is(err, store.ErrLeaseHeld) || !strings.Contains(err.Error(), "holder-b") {
			t.Fatalf("Claim of b's work = %v, %v; want false and ErrLeaseHeld naming holder-b", ok, err)
		}
		if starts, _ := w.counts("ro-1"); starts != 0 {
			t.Fatalf("work held by b started %d times on a", starts)
		}
		// b goes away (a graceful hand-over): a takes it at its next pass.
		if err := b.ReleaseLease(ctx, other.Name, other.Holder, other.Token); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a takes ro-1 over", func() bool { _, ok := w.lease("ro-1"); return ok })
		if l, _ := w.lease("ro-1"); l.Token != 2 || l.Holder != "holder-a" {
			t.Fatalf("a drives ro-1 under %+v, want holder-a with token 2", l)
		}
		if v := testutil.ToFloat64(m.takeovers.WithLabelValues("rollout")); v != 1 {
			t.Errorf("takeovers = %v, want 1", v)
		}
	})
}

// A replica whose renewals cannot get through (paused, cut off from the
// database) stops its work before its lease can expire; another replica
// takes the work over with a new token once the lease expired, and the
// paused replica's fence is refused from then on.
func TestClaimerPausedHolderLosesItsLease(t *testing.T) {
	forEachDriver(t, func(t *testing.T, a, b store.Store) {
		ctx := context.Background()
		const ttl = 2 * time.Second
		pa := &pausable{Store: a}
		ma, mb := NewMetrics(prometheus.NewRegistry()), NewMetrics(prometheus.NewRegistry())
		wa, wb := newFakeWork("ro-1"), newFakeWork("ro-1")
		ca := newClaimer(t, pa, "holder-a", wa, ttl, ma)
		runClaimer(t, ca)
		waitFor(t, "a drives ro-1", func() bool { _, ok := wa.lease("ro-1"); return ok })
		fenceA, _ := ca.Fence("ro-1")
		cb := newClaimer(t, b, "holder-b", wb, ttl, mb)
		runClaimer(t, cb)

		pa.pause()
		waitFor(t, "a stops ro-1", func() bool { _, stopped := wa.counts("ro-1"); return stopped == 1 })
		waitFor(t, "b takes ro-1 over", func() bool { _, ok := wb.lease("ro-1"); return ok })
		lb, _ := wb.lease("ro-1")
		if lb.Token != fenceA.Token+1 {
			t.Fatalf("b drives ro-1 with token %d, want %d", lb.Token, fenceA.Token+1)
		}
		pa.resume()
		// The paused replica's lease is gone: renewing it fails, and its
		// fence is refused by the store.
		if _, err := a.RenewLease(ctx, fenceA.Name, fenceA.Holder, fenceA.Token, ttl); !errors.Is(err, store.ErrLeaseHeld) {
			t.Fatalf("renewal of a's old lease = %v, want ErrLeaseHeld", err)
		}
		if _, err := a.UpdateRollout(ctx, store.RolloutUpdate{RolloutID: "ro-1", Fence: fenceA}); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("UpdateRollout under a's old fence = %v, want ErrFenced", err)
		}
		waitFor(t, "a forgets ro-1", func() bool { return len(ca.Held()) == 0 })
		if starts, _ := wa.counts("ro-1"); starts != 1 {
			// a may claim it again only if b lost it, which it has not.
			t.Errorf("a started ro-1 %d times, want once", starts)
		}
		if v := testutil.ToFloat64(ma.losses.WithLabelValues("rollout")); v != 1 {
			t.Errorf("a's losses = %v, want 1", v)
		}
		if v := testutil.ToFloat64(mb.takeovers.WithLabelValues("rollout")); v != 1 {
			t.Errorf("b's takeovers = %v, want 1", v)
		}
	})
}

// Stopping the claimer stops its work, then releases the leases, so that
// another replica takes the work at once.
func TestClaimerStopReleases(t *testing.T) {
	forEachDriver(t, func(t *testing.T, a, b store.Store) {
		w := newFakeWork("ro-1", "ro-2")
		c := newClaimer(t, a, "holder-a", w, time.Minute, nil)
		stop := runClaimer(t, c)
		waitFor(t, "both started", func() bool { return len(c.Held()) == 2 })
		stop()
		for _, id := range []string{"ro-1", "ro-2"} {
			if _, stopped := w.counts(id); stopped != 1 {
				t.Errorf("%s stopped %d times, want once", id, stopped)
			}
			if l, err := b.AcquireLease(context.Background(), LeaseName("rollout", id), "holder-b", time.Minute); err != nil || l.Token != 2 {
				t.Errorf("AcquireLease(%s) by b after a stopped = %+v, %v; want token 2", id, l, err)
			}
		}
		if ok, err := c.Claim(context.Background(), "ro-3"); ok || err != nil {
			t.Errorf("Claim after Run returned = %v, %v; want false, nil", ok, err)
		}
		held := c.Held()
		sort.Strings(held)
		if len(held) != 0 {
			t.Errorf("Held() after Run returned = %v", held)
		}
	})
}
