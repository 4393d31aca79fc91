package enroll

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/endpoint"
	"flotilla.dev/agent/internal/fakecp"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap/zaptest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// replicaFixture is two fake control planes sharing a CA, each on a TCP
// listener, and an enroller configured with both addresses; the rotation
// starts at replicas[0].
type replicaFixture struct {
	replicas []*fakecp.Server
	clock    *clockwork.FakeClock
	cfg      Config
}

func newReplicaFixture(t *testing.T) *replicaFixture {
	t.Helper()
	ca, err := fakecp.NewCA("replicas CA")
	if err != nil {
		t.Fatal(err)
	}
	var replicas []*fakecp.Server
	var addrs []string
	for range 2 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := fakecp.StartWith(t, fakecp.Options{CA: ca, Listener: lis})
		replicas = append(replicas, s)
		addrs = append(addrs, s.Addr())
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	eps := endpoint.Config{Addresses: addrs, ServerName: fakecp.ServerName}
	eps.Rand = startingAt(t, eps, addrs[0])
	clock := clockwork.NewFakeClockAt(time.Now())
	return &replicaFixture{replicas: replicas, clock: clock, cfg: Config{
		StateDir:  filepath.Join(t.TempDir(), "state"),
		Endpoints: eps,
		CAFile:    caFile,
		JoinToken: fakecp.JoinToken,
		Hostname:  "web-1",
		Logger:    zaptest.NewLogger(t),
		Clock:     clock,
		Backoff:   backoff.Config{Initial: time.Second, Max: 4 * time.Second, Jitter: backoff.NoJitter},
	}}
}

// startingAt returns a Rand whose rotation over cfg's addresses starts at first.
func startingAt(t *testing.T, cfg endpoint.Config, first string) func() uint64 {
	t.Helper()
	for seed := uint64(0); seed < 1000; seed++ {
		cfg.Rand = func() uint64 { return seed }
		r, err := endpoint.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if ep, err := r.Next(context.Background()); err == nil && ep.Address == first {
			return func() uint64 { return seed }
		}
	}
	t.Fatalf("no seed starts at %s", first)
	return nil
}

func (f *replicaFixture) calls() []int {
	return []int{f.replicas[0].RegisterCalls(), f.replicas[1].RegisterCalls()}
}

func TestRegisterMovesOnToTheNextAddressWithoutBackoff(t *testing.T) {
	f := newReplicaFixture(t)
	f.replicas[0].FailRegister(status.Error(codes.Unavailable, "replica shutting down"))
	e, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The fake clock never moves: a backoff wait would hang until the
	// deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := e.Identity(ctx)
	if err != nil {
		t.Fatalf("registration failed: %v", err)
	}
	if got := f.calls(); got[0] != 1 || got[1] != 1 || f.replicas[1].Registrations() != 1 || id.AgentID != "web-1-1" {
		t.Errorf("register calls %v, registrations at the second %d, agent %q; want the second replica to register the agent",
			got, f.replicas[1].Registrations(), id.AgentID)
	}
}

// TestRegisterWaitsWhatABusyReplicaAsks: a replica that sheds the
// registration (ResourceExhausted with a RetryInfo) is not followed at once
// by a TLS handshake with the next one: the agent waits the delay asked
// (up to half again, spread), then tries the next replica.
func TestRegisterWaitsWhatABusyReplicaAsks(t *testing.T) {
	f := newReplicaFixture(t)
	busy := status.New(codes.ResourceExhausted, "the control plane is busy registering other agents; retry in 2s")
	busy, err := busy.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	f.replicas[0].FailRegister(busy.Err())
	e, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.Identity(ctx)
		done <- err
	}()
	if err := f.clock.BlockUntilContext(ctx, 1); err != nil { // the wait asked for
		t.Fatal(err)
	}
	if got := f.calls(); got[0] != 1 || got[1] != 0 {
		t.Fatalf("register calls %v while waiting, want [1 0]: no call to the next replica before the delay", got)
	}
	f.clock.Advance(2*time.Second - time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("registration ended (%v) before the 2s the busy replica asked for", err)
	case <-time.After(100 * time.Millisecond):
	}
	f.clock.Advance(time.Second + time.Millisecond) // at most half again
	if err := <-done; err != nil {
		t.Fatalf("registration failed: %v", err)
	}
	if got := f.calls(); got[0] != 1 || got[1] != 1 {
		t.Errorf("register calls %v, want [1 1]: the second replica after the wait", got)
	}
}

func TestRegisterBacksOffOncePerFullCycle(t *testing.T) {
	f := newReplicaFixture(t)
	unavailable := status.Error(codes.Unavailable, "no database")
	for _, r := range f.replicas {
		r.FailRegister(unavailable, unavailable)
	}
	e, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.Identity(ctx)
		done <- err
	}()
	for cycle, delay := range []time.Duration{time.Second, 2 * time.Second} {
		if err := f.clock.BlockUntilContext(ctx, 1); err != nil { // the backoff timer
			t.Fatal(err)
		}
		if got := f.calls(); got[0] != cycle+1 || got[1] != cycle+1 {
			t.Fatalf("cycle %d: register calls %v before the backoff, want each replica once per cycle", cycle, got)
		}
		f.clock.Advance(delay)
	}
	if err := <-done; err != nil {
		t.Fatalf("registration failed: %v", err)
	}
	if got := f.calls(); got[0] != 3 || got[1] != 2 {
		t.Errorf("register calls %v, want [3 2]: the third cycle succeeds at its first replica", got)
	}
}

func TestRenewalGoesToAnotherAddressAfterAFailure(t *testing.T) {
	f := newReplicaFixture(t)
	e, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := e.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	creds := e.Credentials(id)
	f.replicas[0].Stop()
	// The renewals start at the first replica, now dead; the retry goes to
	// the other one.
	if _, err := e.Renew(ctx, creds); err == nil || status.Code(err) != codes.Unavailable {
		t.Fatalf("renewal at the dead replica: %v, want Unavailable", err)
	}
	renewed, err := e.Renew(ctx, creds)
	if err != nil {
		t.Fatalf("renewal at the live replica: %v", err)
	}
	if renewed.Serial() == id.Serial() || creds.Current() != renewed {
		t.Error("the renewal did not replace the certificate")
	}
}
