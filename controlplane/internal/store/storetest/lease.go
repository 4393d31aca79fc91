package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// leaseSlack is how far a lease's expiry may be from this process's clock
// plus its TTL: the database's clock is on the same machine in tests, but
// the statement takes time.
const leaseSlack = 5 * time.Second

func mustAcquire(t *testing.T, s store.Store, name, holder string, ttl time.Duration) store.Lease {
	t.Helper()
	l, err := s.AcquireLease(context.Background(), name, holder, ttl)
	if err != nil {
		t.Fatalf("AcquireLease(%q, %q): %v", name, holder, err)
	}
	if l.Name != name || l.Holder != holder || l.Token < 1 {
		t.Fatalf("AcquireLease(%q, %q) = %+v", name, holder, l)
	}
	return l
}

// wantHeldBy checks that err says the lease is held, by holder when the
// error names one.
func wantHeldBy(t *testing.T, err error, holder string, token int64) {
	t.Helper()
	if !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("error = %v, want ErrLeaseHeld", err)
	}
	var held *store.LeaseHeldError
	if errors.As(err, &held) && (held.Lease.Holder != holder || held.Lease.Token != token) {
		t.Fatalf("held by %q with token %d, want %q with %d", held.Lease.Holder, held.Lease.Token, holder, token)
	}
}

func testLeaseAcquireRenewRelease(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	before := time.Now()
	a := mustAcquire(t, s, "controlplane", "a", time.Minute)
	if d := a.ExpiresAt.Sub(before.Add(time.Minute)); d < -leaseSlack || d > leaseSlack {
		t.Errorf("expires at %s, want about a minute after %s", a.ExpiresAt, before)
	}
	// The holder acquiring again renews and keeps its token.
	if again := mustAcquire(t, s, "controlplane", "a", 2*time.Minute); again.Token != a.Token || !again.ExpiresAt.After(a.ExpiresAt) {
		t.Errorf("re-acquire by the holder = %+v, want token %d and a later expiry than %s", again, a.Token, a.ExpiresAt)
	}
	_, err := s.AcquireLease(ctx, "controlplane", "b", time.Minute)
	wantHeldBy(t, err, "a", a.Token)
	var held *store.LeaseHeldError
	if !errors.As(err, &held) {
		t.Errorf("AcquireLease by another holder = %v, want a *LeaseHeldError", err)
	}
	// Names are independent.
	mustAcquire(t, s, "other", "b", time.Minute)

	renewed, err := s.RenewLease(ctx, "controlplane", "a", a.Token, time.Hour)
	if err != nil || renewed.Token != a.Token || renewed.ExpiresAt.Sub(time.Now().Add(time.Hour)).Abs() > leaseSlack {
		t.Fatalf("RenewLease = %+v, %v; want token %d, expiry in an hour", renewed, err, a.Token)
	}
	_, err = s.RenewLease(ctx, "controlplane", "b", a.Token, time.Hour)
	wantHeldBy(t, err, "a", a.Token)
	_, err = s.RenewLease(ctx, "controlplane", "a", a.Token+1, time.Hour)
	wantHeldBy(t, err, "a", a.Token)

	// Only the holder with its token releases.
	if err := s.ReleaseLease(ctx, "controlplane", "b", a.Token); err != nil {
		t.Fatalf("ReleaseLease by another holder: %v", err)
	}
	_, err = s.AcquireLease(ctx, "controlplane", "b", time.Minute)
	wantHeldBy(t, err, "a", a.Token)
	if err := s.ReleaseLease(ctx, "controlplane", "a", a.Token); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	b := mustAcquire(t, s, "controlplane", "b", time.Minute)
	if b.Token != a.Token+1 {
		t.Errorf("token after the holder changed = %d, want %d", b.Token, a.Token+1)
	}
	_, err = s.RenewLease(ctx, "controlplane", "a", a.Token, time.Minute)
	wantHeldBy(t, err, "b", b.Token)
	testLeaseBadInput(t, s)
}

func testLeaseBadInput(t *testing.T, s store.Store) {
	ctx := context.Background()
	tests := []struct {
		name, lease, holder, field string
		ttl                        time.Duration
	}{
		{"empty name", "", "a", "name", time.Second},
		{"empty holder", "x", "", "holder", time.Second},
		{"zero ttl", "x", "a", "ttl", 0},
		{"sub-millisecond ttl", "x", "a", "ttl", time.Microsecond},
	}
	for _, tt := range tests {
		if _, err := s.AcquireLease(ctx, tt.lease, tt.holder, tt.ttl); err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: AcquireLease = %v, want an error naming %q", tt.name, err, tt.field)
		}
		if _, err := s.RenewLease(ctx, tt.lease, tt.holder, 1, tt.ttl); err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: RenewLease = %v, want an error naming %q", tt.name, err, tt.field)
		}
	}
}

// testLeaseExpiresAndMoves lets a short lease expire: another holder takes
// it with the next token, and the first holder has lost it for good.
func testLeaseExpiresAndMoves(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	a := mustAcquire(t, s, "controlplane", "a", 50*time.Millisecond)
	var b store.Lease
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		b, err = s.AcquireLease(ctx, "controlplane", "b", time.Minute)
		if err == nil {
			break
		}
		wantHeldBy(t, err, "a", a.Token)
		if time.Now().After(deadline) {
			t.Fatalf("a 50ms lease still held after 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b.Token != a.Token+1 {
		t.Errorf("token after expiry = %d, want %d", b.Token, a.Token+1)
	}
	_, err := s.RenewLease(ctx, "controlplane", "a", a.Token, time.Minute)
	wantHeldBy(t, err, "b", b.Token)
	_, err = s.AcquireLease(ctx, "controlplane", "a", time.Minute)
	wantHeldBy(t, err, "b", b.Token)
	if err := s.ReleaseLease(ctx, "controlplane", "a", a.Token); err != nil {
		t.Fatal(err)
	}
	if l, err := s.RenewLease(ctx, "controlplane", "b", b.Token, time.Minute); err != nil || l.Holder != "b" {
		t.Fatalf("b's lease after a's stale release = %+v, %v", l, err)
	}
}

// testLeaseRace races holders for a free lease: exactly one gets it, and
// every other is told who.
func testLeaseRace(t *testing.T, open Opener) {
	s := open(t)
	const racers = 8
	leases := make([]store.Lease, racers)
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			<-start
			leases[i], errs[i] = s.AcquireLease(context.Background(), "controlplane", fmt.Sprintf("holder-%d", i), time.Minute)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("holders %d and %d both acquired the lease", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no holder acquired the lease: %v", errs)
	}
	for i, err := range errs {
		if i != winner {
			wantHeldBy(t, err, leases[winner].Holder, leases[winner].Token)
		}
	}
}
