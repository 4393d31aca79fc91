package fleet_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/selector"
	"flotilla.dev/controlplane/internal/store"
)

// fixtureFleet builds six agents in known states:
//
//	a-01 prod web  connected
//	a-02 prod db   connected
//	a-03 staging web connected
//	a-04 prod web  lost (never connected)
//	a-05 staging db disconnected
//	a-06 prod web  lost (never connected)
func fixtureFleet(t *testing.T) *fleet.Registry {
	t.Helper()
	st := openStore(t)
	clk := newClock(t0)
	r := newRegistry(t, st, clk)
	labels := map[string]map[string]string{
		"a-01": {"env": "prod", "role": "web"},
		"a-02": {"env": "prod", "role": "db"},
		"a-03": {"env": "staging", "role": "web"},
		"a-04": {"env": "prod", "role": "web"},
		"a-05": {"env": "staging", "role": "db"},
		"a-06": {"env": "prod", "role": "web"},
	}
	// Registered out of order: paging must still follow the IDs.
	for _, id := range []string{"a-04", "a-01", "a-06", "a-03", "a-02", "a-05"} {
		register(t, st, r, id, t0, labels[id], nil)
	}
	clk.Set(at(lostAfter))
	r.Sweep() // everyone is lost
	for _, id := range []string{"a-01", "a-02", "a-03", "a-05"} {
		s := mustAttach(t, r, id, labels[id], "10.0.0.1:5000")
		if id == "a-05" {
			r.Detach(s, reasonEOF)
		} else {
			t.Cleanup(func() { r.Detach(s, reasonEOF) })
		}
	}
	return r
}

func mustParse(t *testing.T, s string) selector.Selector {
	t.Helper()
	sel, err := selector.Parse(s)
	if err != nil {
		t.Fatalf("selector.Parse(%q): %v", s, err)
	}
	return sel
}

func TestList(t *testing.T) {
	r := fixtureFleet(t)
	tests := []struct {
		name      string
		selector  string
		states    []string
		after     string
		limit     int
		wantIDs   []string
		wantMore  bool
		wantTotal int
	}{
		{name: "everything", limit: 100, wantIDs: []string{"a-01", "a-02", "a-03", "a-04", "a-05", "a-06"}, wantTotal: 6},
		{name: "exact page", limit: 6, wantIDs: []string{"a-01", "a-02", "a-03", "a-04", "a-05", "a-06"}, wantTotal: 6},
		{name: "first page", limit: 2, wantIDs: []string{"a-01", "a-02"}, wantMore: true, wantTotal: 6},
		{name: "second page", after: "a-02", limit: 2, wantIDs: []string{"a-03", "a-04"}, wantMore: true, wantTotal: 6},
		{name: "last page", after: "a-04", limit: 2, wantIDs: []string{"a-05", "a-06"}, wantTotal: 6},
		{name: "past the end", after: "a-06", limit: 2, wantIDs: nil, wantTotal: 6},
		{name: "cursor between IDs", after: "a-025", limit: 1, wantIDs: []string{"a-03"}, wantMore: true, wantTotal: 6},
		{name: "cursor before all", after: "a", limit: 1, wantIDs: []string{"a-01"}, wantMore: true, wantTotal: 6},
		{name: "selector", selector: "env=prod", limit: 10, wantIDs: []string{"a-01", "a-02", "a-04", "a-06"}, wantTotal: 4},
		{name: "selector paged", selector: "env=prod,role=web", limit: 1, wantIDs: []string{"a-01"}, wantMore: true, wantTotal: 3},
		{name: "selector second page", selector: "env=prod,role=web", after: "a-01", limit: 1, wantIDs: []string{"a-04"}, wantMore: true, wantTotal: 3},
		{name: "selector last page", selector: "env=prod,role=web", after: "a-04", limit: 1, wantIDs: []string{"a-06"}, wantTotal: 3},
		{name: "set selector", selector: "role in (db)", limit: 10, wantIDs: []string{"a-02", "a-05"}, wantTotal: 2},
		{name: "no match", selector: "env=dev", limit: 10, wantIDs: nil, wantTotal: 0},
		{name: "one state", states: []string{store.AgentConnected}, limit: 10, wantIDs: []string{"a-01", "a-02", "a-03"}, wantTotal: 3},
		{name: "two states", states: []string{store.AgentLost, store.AgentDisconnected}, limit: 10, wantIDs: []string{"a-04", "a-05", "a-06"}, wantTotal: 3},
		{name: "state and selector", selector: "env=prod", states: []string{store.AgentLost}, limit: 10, wantIDs: []string{"a-04", "a-06"}, wantTotal: 2},
		{name: "state, selector and cursor", selector: "role=web", states: []string{store.AgentConnected, store.AgentLost}, after: "a-01", limit: 2,
			wantIDs: []string{"a-03", "a-04"}, wantMore: true, wantTotal: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, more, total := r.List(fleet.Query{Selector: mustParse(t, tt.selector), States: tt.states, After: tt.after, Limit: tt.limit})
			if got := agentIDs(page); !slices.Equal(got, tt.wantIDs) && (len(got) != 0 || len(tt.wantIDs) != 0) {
				t.Errorf("page = %v, want %v", got, tt.wantIDs)
			}
			if more != tt.wantMore {
				t.Errorf("more = %v, want %v", more, tt.wantMore)
			}
			if total != tt.wantTotal {
				t.Errorf("total = %d, want %d", total, tt.wantTotal)
			}
		})
	}
}

func TestListSnapshot(t *testing.T) {
	r := fixtureFleet(t)
	page, _, _ := r.List(fleet.Query{After: "a-02", Limit: 1})
	if len(page) != 1 {
		t.Fatalf("page has %d agents, want 1", len(page))
	}
	a := page[0]
	if a.Record.ID != "a-03" || a.Record.State != store.AgentConnected || !a.Connected || a.Hello.GetVersion() != "v1.2.3" {
		t.Errorf("snapshot = %s connected %v hello %v; want a-03 connected with its hello", fmtState(a), a.Connected, a.Hello)
	}
	if want := map[string]string{"env": "staging", "role": "web"}; !maps.Equal(a.Record.Labels, want) {
		t.Errorf("labels = %v, want %v", a.Record.Labels, want)
	}
	a.Record.Labels["env"] = "mutated"
	if got := mustGet(t, r, "a-03").Record.Labels["env"]; got != "staging" {
		t.Errorf("mutating a List snapshot changed the registry: env = %q", got)
	}
	if got := mustGet(t, r, "a-05"); got.Connected || got.Record.State != store.AgentDisconnected {
		t.Errorf("a-05 = %s connected %v, want disconnected", fmtState(got), got.Connected)
	}
}

func TestCounts(t *testing.T) {
	tests := []struct {
		name string
		r    func(t *testing.T) *fleet.Registry
		want map[string]int
	}{
		{
			name: "empty fleet reports every state",
			r:    func(t *testing.T) *fleet.Registry { return newRegistry(t, openStore(t), newClock(t0)) },
			want: map[string]int{store.AgentConnected: 0, store.AgentDisconnected: 0, store.AgentLost: 0},
		},
		{
			name: "fixture",
			r:    fixtureFleet,
			want: map[string]int{store.AgentConnected: 3, store.AgentDisconnected: 1, store.AgentLost: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r(t).Counts(); !maps.Equal(got, tt.want) {
				t.Errorf("Counts = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCountsFollowSweep(t *testing.T) {
	st := openStore(t)
	clk := newClock(t0)
	r := newRegistry(t, st, clk)
	register(t, st, r, "a1", t0, nil, nil)
	register(t, st, r, "a2", t0, nil, nil)
	s := mustAttach(t, r, "a1", nil, "10.0.0.1:5000")
	want := map[string]int{store.AgentConnected: 1, store.AgentDisconnected: 1, store.AgentLost: 0}
	if got := r.Counts(); !maps.Equal(got, want) {
		t.Errorf("Counts = %v, want %v", got, want)
	}
	clk.Set(at(lostAfter + time.Second))
	r.Sweep()
	want = map[string]int{store.AgentConnected: 0, store.AgentDisconnected: 0, store.AgentLost: 2}
	if got := r.Counts(); !maps.Equal(got, want) {
		t.Errorf("Counts after sweep = %v, want %v", got, want)
	}
	r.Detach(s, reasonEOF)
}
