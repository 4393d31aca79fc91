package endpoint

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// fakeResolver answers from a table; a name missing from it fails.
type fakeResolver struct {
	mu      sync.Mutex
	records map[string][]string
	lookups int
}

func (f *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if r, ok := f.records[host]; ok {
		return r, nil
	}
	return nil, errors.New("no such host")
}

func (f *fakeResolver) set(host string, records ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if records == nil {
		delete(f.records, host)
		return
	}
	f.records[host] = records
}

func seed(v uint64) func() uint64 { return func() uint64 { return v } }

func mustNew(t *testing.T, cfg Config) *Rotation {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func next(t *testing.T, r *Rotation) Endpoint {
	t.Helper()
	ep, err := r.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

var three = []string{"10.0.0.1:7443", "10.0.0.2:7443", "10.0.0.3:7443"}

func TestRoundRobinVisitsEveryAddressOncePerCycle(t *testing.T) {
	for s := uint64(0); s < 20; s++ {
		r := mustNew(t, Config{Addresses: three, Rand: seed(s)})
		var first []string
		for i := 0; i < 3; i++ {
			first = append(first, next(t, r).Address)
		}
		seen := map[string]bool{}
		for _, a := range first {
			seen[a] = true
		}
		if len(seen) != 3 {
			t.Fatalf("seed %d: a cycle visited %v, want every address once", s, first)
		}
		for i := 0; i < 6; i++ { // later cycles repeat the same order
			if got := next(t, r).Address; got != first[i%3] {
				t.Fatalf("seed %d: attempt %d went to %s, want %s (order %v)", s, i+3, got, first[i%3], first)
			}
		}
	}
}

func TestRandomStartSpreadsAFleet(t *testing.T) {
	const agents = 3000
	starts := map[string]int{}
	for i := 0; i < agents; i++ {
		r := mustNew(t, Config{Addresses: three}) // real randomness
		starts[next(t, r).Address]++
	}
	// Expected 1000 each; fewer than 800 is more than 8 standard deviations
	// off for a uniform start.
	for _, a := range three {
		if starts[a] < 800 {
			t.Errorf("%d of %d agents started at %s, want about a third: %v", starts[a], agents, a, starts)
		}
	}
}

func TestSecondAddressesSpreadToo(t *testing.T) {
	// The agents that started at one address do not all move to the same
	// next one: a dead replica's agents spread over the survivors.
	const agents = 3000
	after := map[string]int{}
	for i := 0; i < agents; i++ {
		r := mustNew(t, Config{Addresses: three})
		if next(t, r).Address != three[0] {
			continue
		}
		after[next(t, r).Address]++
	}
	if after[three[1]] < 250 || after[three[2]] < 250 {
		t.Errorf("agents leaving %s went to %v, want both others about equally", three[0], after)
	}
}

func TestFailedCountsFullCycles(t *testing.T) {
	r := mustNew(t, Config{Addresses: three, Rand: seed(7)})
	var cycles []bool
	for i := 0; i < 7; i++ {
		next(t, r)
		cycles = append(cycles, r.Failed())
	}
	want := []bool{false, false, true, false, false, true, false}
	for i := range want {
		if cycles[i] != want[i] {
			t.Fatalf("full cycles %v, want %v: back off once per cycle, not per address", cycles, want)
		}
	}
}

func TestConnectedStartsANewCycleCountingItself(t *testing.T) {
	r := mustNew(t, Config{Addresses: three, Rand: seed(3)})
	next(t, r)
	r.Failed() // first address dead
	next(t, r)
	r.Connected() // second one welcomed the agent, then ended the stream
	next(t, r)
	if r.Failed() {
		t.Fatal("a full cycle after two attempts since the connection")
	}
	next(t, r)
	if !r.Failed() {
		t.Fatal("no full cycle after the connected address and both others failed")
	}
}

func TestSingleAddressBacksOffAfterEveryFailure(t *testing.T) {
	r := mustNew(t, Config{Addresses: []string{"10.0.0.1:7443"}})
	for i := 0; i < 3; i++ {
		if ep := next(t, r); ep.Address != "10.0.0.1:7443" || ep.ServerName != "10.0.0.1" {
			t.Fatalf("got %+v", ep)
		}
		if !r.Failed() {
			t.Fatal("a failure at the only address is a full cycle")
		}
	}
}

func TestNameWithSeveralRecords(t *testing.T) {
	res := &fakeResolver{records: map[string][]string{
		"cp.example": {"10.0.0.1", "10.0.0.2", "fd00::3"},
	}}
	r := mustNew(t, Config{Addresses: []string{"cp.example:7443"}, Resolver: res, Rand: seed(11)})
	got := map[string]Endpoint{}
	for i := 0; i < 3; i++ {
		ep := next(t, r)
		got[ep.Address] = ep
		if full := r.Failed(); full != (i == 2) {
			t.Fatalf("attempt %d: full cycle %v; the cycle is the three records", i, full)
		}
	}
	for _, a := range []string{"10.0.0.1:7443", "10.0.0.2:7443", "[fd00::3]:7443"} {
		ep, ok := got[a]
		if !ok {
			t.Fatalf("a cycle visited %v, not %s", got, a)
		}
		if ep.ServerName != "cp.example" || ep.Configured != "cp.example:7443" {
			t.Errorf("%s: server name %q, configured %q; want the configured host name", a, ep.ServerName, ep.Configured)
		}
	}
	if res.lookups != 3 {
		t.Errorf("%d lookups for 3 attempts, want one per attempt", res.lookups)
	}
}

func TestRecordsChangeBetweenAttempts(t *testing.T) {
	res := &fakeResolver{records: map[string][]string{"cp.example": {"10.0.0.1", "10.0.0.2"}}}
	r := mustNew(t, Config{Addresses: []string{"cp.example:7443"}, Resolver: res, Rand: seed(5)})
	next(t, r)
	// A replica is added: it is part of the very next attempt's choice, and a
	// cycle now has three endpoints.
	res.set("cp.example", "10.0.0.1", "10.0.0.2", "10.0.0.3")
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		seen[next(t, r).Address] = true
	}
	if !seen["10.0.0.3:7443"] || len(seen) != 3 {
		t.Fatalf("after the new record, a cycle visited %v", seen)
	}
	// The name stops resolving: the last known records are used.
	res.set("cp.example")
	if ep := next(t, r); !strings.HasPrefix(ep.Address, "10.0.0.") {
		t.Fatalf("got %+v, want one of the last known records", ep)
	}
}

func TestServerNameOverrideAndMixedAddresses(t *testing.T) {
	res := &fakeResolver{records: map[string][]string{"a.example": {"10.0.0.1"}}}
	r := mustNew(t, Config{
		Addresses: []string{"a.example:1", "10.0.0.9:2", "[::1]:3"}, ServerName: "cp.internal", Resolver: res,
	})
	eps, err := r.Resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 3 {
		t.Fatalf("got %v", eps)
	}
	for _, ep := range eps {
		if ep.ServerName != "cp.internal" {
			t.Errorf("%v: server name %q, want the override", ep, ep.ServerName)
		}
	}
	if res.lookups != 1 {
		t.Errorf("%d lookups, want 1: IP literals are not looked up", res.lookups)
	}
}

func TestUnresolvableAddresses(t *testing.T) {
	res := &fakeResolver{records: map[string][]string{"good.example": {"10.0.0.1"}}}
	r := mustNew(t, Config{Addresses: []string{"bad.example:1", "good.example:1"}, Resolver: res})
	for i := 0; i < 3; i++ {
		if ep := next(t, r); ep.Address != "10.0.0.1:1" {
			t.Fatalf("got %v, want the only resolvable address", ep)
		}
	}
	r = mustNew(t, Config{Addresses: []string{"bad.example:1"}, Resolver: res})
	_, err := r.Next(context.Background())
	if err == nil || !strings.Contains(err.Error(), "resolving bad.example:1") {
		t.Fatalf("got %v, want an error naming the address", err)
	}
	if !r.Failed() {
		t.Error("a resolution that gives nothing must count as a full cycle")
	}
}

func TestNewRejects(t *testing.T) {
	for _, addrs := range [][]string{nil, {""}, {"cp"}, {":1"}, {"cp:0"}, {"cp:x"}, {"cp:1", "cp"}} {
		if _, err := New(Config{Addresses: addrs}); err == nil {
			t.Errorf("New accepted %q", addrs)
		}
	}
}

func TestServerNameOf(t *testing.T) {
	for _, tt := range []struct{ addr, override, want string }{
		{"cp.example:7443", "", "cp.example"},
		{"[::1]:7443", "", "::1"},
		{"10.0.0.1:7443", "cp.internal", "cp.internal"},
	} {
		if got := ServerNameOf(tt.addr, tt.override); got != tt.want {
			t.Errorf("ServerNameOf(%q, %q) = %q, want %q", tt.addr, tt.override, got, tt.want)
		}
	}
}
