package fleet_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
)

func TestNew(t *testing.T) {
	st := openStore(t)
	tests := []struct {
		name          string
		cfg           fleet.Config
		wantErr       string
		wantLostAfter time.Duration
	}{
		{name: "store required", cfg: fleet.Config{}, wantErr: "Store is required"},
		{name: "defaults", cfg: fleet.Config{Store: st}, wantLostAfter: fleet.DefaultLostAfter},
		{name: "explicit", cfg: fleet.Config{Store: st, LostAfter: 5 * time.Second}, wantLostAfter: 5 * time.Second},
		{name: "minimum", cfg: fleet.Config{Store: st, LostAfter: time.Second}, wantLostAfter: time.Second},
		{name: "below minimum", cfg: fleet.Config{Store: st, LostAfter: 999 * time.Millisecond}, wantErr: "below the 1s minimum"},
		{name: "negative", cfg: fleet.Config{Store: st, LostAfter: -time.Second}, wantErr: "below the 1s minimum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := fleet.New(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := r.LostAfter(); got != tt.wantLostAfter {
				t.Errorf("LostAfter = %s, want %s", got, tt.wantLostAfter)
			}
		})
	}
}

func TestAttachUnknownAgent(t *testing.T) {
	st := openStore(t)
	r := newRegistry(t, st, newClock(t0))
	if _, err := r.Attach("nobody", helloMsg("nobody", nil), "10.0.0.1:1"); !errors.Is(err, fleet.ErrUnknownAgent) {
		t.Errorf("Attach(unknown) = %v, want ErrUnknownAgent", err)
	}
	if _, ok := r.Get("nobody"); ok {
		t.Errorf("Get(unknown) found an agent")
	}
}

func TestAddIgnoresDuplicate(t *testing.T) {
	st := openStore(t)
	r := newRegistry(t, st, newClock(t0))
	rec := register(t, st, r, "a1", t0, nil, nil)
	s := mustAttach(t, r, "a1", nil, "10.0.0.1:5000")
	defer r.Detach(s, reasonEOF)
	r.Add(rec) // a second Add must not reset the live entry
	if got := mustGet(t, r, "a1"); got.Record.State != store.AgentConnected || !got.Connected {
		t.Errorf("after duplicate Add: %s, Connected %v; want the live connected entry", fmtState(got), got.Connected)
	}
	if _, _, total := r.List(fleet.Query{Limit: 10}); total != 1 {
		t.Errorf("List total = %d after duplicate Add, want 1", total)
	}
}

func TestAttachReplacesPreviousSession(t *testing.T) {
	st := openStore(t)
	clk := newClock(t0)
	r := newRegistry(t, st, clk)
	register(t, st, r, "a1", t0, nil, nil)

	old := mustAttach(t, r, "a1", nil, "10.0.0.1:5000")
	clk.Set(at(time.Second))
	cur := mustAttach(t, r, "a1", nil, "10.0.0.1:6000")

	if !isClosed(old) {
		t.Fatal("first session still open after a second Attach")
	}
	if !fleet.IsReplaced(old.Err()) {
		t.Errorf("old session Err = %v, want IsReplaced", old.Err())
	}
	if isClosed(cur) {
		t.Fatalf("new session closed: %v", cur.Err())
	}
	if old.AgentID() != "a1" || cur.AgentID() != "a1" {
		t.Errorf("AgentID = %q, %q; want a1", old.AgentID(), cur.AgentID())
	}

	// The stale stream's messages are refused and do not count as life.
	clk.Set(at(10 * time.Second))
	if err := r.Heartbeat(old, heartbeatMsg(1, true)); !fleet.IsReplaced(err) {
		t.Errorf("Heartbeat(stale) = %v, want IsReplaced", err)
	}
	r.Touch(old)
	if got := mustGet(t, r, "a1"); !got.Record.LastSeenAt.Equal(at(time.Second)) || got.LastHeartbeat != nil {
		t.Errorf("stale session moved LastSeenAt to %s / set heartbeat %v", got.Record.LastSeenAt, got.LastHeartbeat)
	}

	// The stale handler detaching must not disconnect the new stream.
	r.Detach(old, reasonEOF)
	got := mustGet(t, r, "a1")
	if got.Record.State != store.AgentConnected || got.Record.StateReason != "stream opened from 10.0.0.1:6000" || !got.Connected {
		t.Errorf("after Detach(stale): %s, Connected %v; want connected from 10.0.0.1:6000", fmtState(got), got.Connected)
	}
	if isClosed(cur) {
		t.Errorf("Detach(stale) closed the current session")
	}
	if got.Record.PeerAddress != "10.0.0.1:6000" {
		t.Errorf("PeerAddress = %q, want the newest stream's", got.Record.PeerAddress)
	}

	r.Detach(cur, reasonEOF)
	if got := mustGet(t, r, "a1"); got.Record.State != store.AgentDisconnected || got.Connected {
		t.Errorf("after Detach(current): %s, Connected %v; want disconnected", fmtState(got), got.Connected)
	}
	if fleet.IsReplaced(cur.Err()) {
		t.Errorf("detached session Err = %v, must not be IsReplaced", cur.Err())
	}
}

func TestAttachLabels(t *testing.T) {
	tests := []struct {
		name    string
		pinned  map[string]string
		claimed map[string]string
		want    map[string]string
	}{
		{
			name:    "no pinned labels: claims are taken",
			claimed: map[string]string{"env": "dev", "role": "web"},
			want:    map[string]string{"env": "dev", "role": "web"},
		},
		{
			name:    "pinned labels override claimed ones",
			pinned:  map[string]string{"env": "prod"},
			claimed: map[string]string{"env": "dev", "role": "web"},
			want:    map[string]string{"env": "prod", "role": "web"},
		},
		{
			name:   "pinned labels stay when nothing is claimed",
			pinned: map[string]string{"env": "prod", "zone": "a"},
			want:   map[string]string{"env": "prod", "zone": "a"},
		},
		{
			name:    "labels claimed at registration but not in the hello are dropped",
			claimed: map[string]string{"role": "db"},
			want:    map[string]string{"role": "db"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			r := newRegistry(t, st, newClock(t0))
			register(t, st, r, "a1", t0, map[string]string{"registered": "yes"}, tt.pinned)
			s := mustAttach(t, r, "a1", tt.claimed, "10.0.0.1:5000")
			defer r.Detach(s, reasonEOF)
			got := mustGet(t, r, "a1")
			if !maps.Equal(got.Record.Labels, tt.want) {
				t.Errorf("Labels = %v, want %v", got.Record.Labels, tt.want)
			}
			if got.Record.Hostname != "web-a1" || got.Record.Version != "v1.2.3" {
				t.Errorf("Hostname, Version = %q, %q; want the hello's web-a1, v1.2.3", got.Record.Hostname, got.Record.Version)
			}
			// Snapshots are copies.
			got.Record.Labels["env"] = "mutated"
			if mustGet(t, r, "a1").Record.Labels["env"] == "mutated" {
				t.Errorf("Get returned the registry's own label map")
			}
			mustFlush(t, r)
			if stored := mustStored(t, st, "a1"); !maps.Equal(stored.Labels, tt.want) || !maps.Equal(stored.PinnedLabels, tt.pinned) {
				t.Errorf("stored labels %v pinned %v, want %v pinned %v", stored.Labels, stored.PinnedLabels, tt.want, tt.pinned)
			}
		})
	}
}

func TestAttachKeepsHostnameWhenHelloHasNone(t *testing.T) {
	st := openStore(t)
	r := newRegistry(t, st, newClock(t0))
	register(t, st, r, "a1", t0, nil, nil)
	s, err := r.Attach("a1", &flotillav1.Hello{AgentId: "a1", Version: "v2"}, "10.0.0.1:5000")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Detach(s, reasonEOF)
	if got := mustGet(t, r, "a1").Record.Hostname; got != "host-a1" {
		t.Errorf("Hostname = %q, want the registered host-a1", got)
	}
}

func TestCloseSessions(t *testing.T) {
	st := openStore(t)
	r := newRegistry(t, st, newClock(t0))
	for _, id := range []string{"a1", "a2", "a3"} {
		register(t, st, r, id, t0, nil, nil)
	}
	s1 := mustAttach(t, r, "a1", nil, "10.0.0.1:5000")
	s2 := mustAttach(t, r, "a2", nil, "10.0.0.2:5000")
	r.CloseSessions(fleet.ErrShuttingDown)
	for _, s := range []*fleet.Session{s1, s2} {
		if !isClosed(s) {
			t.Fatalf("%s: session open after CloseSessions", s.AgentID())
		}
		if !errors.Is(s.Err(), fleet.ErrShuttingDown) {
			t.Errorf("%s: Err = %v, want ErrShuttingDown", s.AgentID(), s.Err())
		}
	}
	// The handlers then detach, which records the disconnection.
	r.Detach(s1, "control plane shutting down")
	if got := mustGet(t, r, "a1"); got.Record.State != store.AgentDisconnected || got.Record.StateReason != "control plane shutting down" {
		t.Errorf("a1 after Detach: %s", fmtState(got))
	}
	if got := mustGet(t, r, "a3"); got.Record.State != store.AgentDisconnected || got.Record.StateReason != reasonRegistered {
		t.Errorf("a3 (no session) changed: %s", fmtState(got))
	}
	// Closing twice keeps the first reason.
	r.CloseSessions(errors.New("second"))
	if !errors.Is(s2.Err(), fleet.ErrShuttingDown) {
		t.Errorf("s2 Err after second CloseSessions = %v", s2.Err())
	}
}

func TestFlushWritesOneBatch(t *testing.T) {
	real := openStore(t)
	st := &recordingStore{Store: real}
	clk := newClock(t0)
	r := newRegistry(t, st, clk)
	ids := []string{"a1", "a2", "a3"}
	hbs := map[string]*flotillav1.Heartbeat{}
	for i, id := range ids {
		register(t, real, r, id, t0, nil, map[string]string{"env": "prod"})
		clk.Set(at(time.Duration(i+1) * time.Second))
		s := mustAttach(t, r, id, map[string]string{"role": "web"}, "10.0.0.1:500"+id[1:])
		defer r.Detach(s, reasonEOF)
		hbs[id] = heartbeatMsg(float64(10*(i+1)), true)
		mustHeartbeat(t, r, s, hbs[id])
	}
	clk.Set(at(10 * time.Second))
	if batches := st.takeBatches(); len(batches) != 0 {
		t.Fatalf("store written before Flush: %d batches", len(batches))
	}
	mustFlush(t, r)
	batches := st.takeBatches()
	if len(batches) != 1 {
		t.Fatalf("Flush wrote %d batches, want 1", len(batches))
	}
	got := batchIDs(batches[0])
	slices.Sort(got)
	if !slices.Equal(got, ids) {
		t.Errorf("batch IDs = %v, want %v", got, ids)
	}
	for i, id := range ids {
		a := mustStored(t, real, id)
		connectedAt := at(time.Duration(i+1) * time.Second)
		if a.State != store.AgentConnected || a.StateReason != "stream opened from 10.0.0.1:500"+id[1:] {
			t.Errorf("%s stored state %s (%q)", id, a.State, a.StateReason)
		}
		if !a.ConnectedAt.Equal(connectedAt) || !a.LastSeenAt.Equal(connectedAt) || !a.StateChangedAt.Equal(connectedAt) {
			t.Errorf("%s stored ConnectedAt %s LastSeenAt %s StateChangedAt %s, want all %s", id, a.ConnectedAt, a.LastSeenAt, a.StateChangedAt, connectedAt)
		}
		if a.PeerAddress != "10.0.0.1:500"+id[1:] || a.Version != "v1.2.3" || a.Hostname != "web-"+id {
			t.Errorf("%s stored peer %q version %q hostname %q", id, a.PeerAddress, a.Version, a.Hostname)
		}
		if want := map[string]string{"env": "prod", "role": "web"}; !maps.Equal(a.Labels, want) {
			t.Errorf("%s stored labels %v, want %v", id, a.Labels, want)
		}
		if h := decodeHello(t, a.Hello); !proto.Equal(h, helloMsg(id, map[string]string{"role": "web"})) {
			t.Errorf("%s stored hello = %v", id, h)
		}
		if hb := decodeHeartbeat(t, a.LastHeartbeat); !proto.Equal(hb, hbs[id]) {
			t.Errorf("%s stored heartbeat = %v, want %v", id, hb, hbs[id])
		}
	}
	// Nothing pending: no write at all.
	mustFlush(t, r)
	if batches := st.takeBatches(); len(batches) != 0 {
		t.Errorf("Flush with nothing pending wrote %d batches", len(batches))
	}
}

// TestHeartbeatPersistence checks when a heartbeat reaches the store: at
// once when application health or the containers change, otherwise only once
// PersistInterval (1m) has passed since it was last written. Each step
// heartbeats at t0+at, flushes, and checks what was written.
func TestHeartbeatPersistence(t *testing.T) {
	containers := func(image string) []*flotillav1.ManagedContainer {
		return []*flotillav1.ManagedContainer{{Name: "app", Image: image, State: "running"}}
	}
	hb := func(cpu float64, healthy bool, image string) *flotillav1.Heartbeat {
		m := heartbeatMsg(cpu, healthy)
		if image != "" {
			m.Containers = containers(image)
		}
		return m
	}
	steps := []struct {
		name      string
		at        time.Duration
		hb        *flotillav1.Heartbeat
		wantWrite bool    // a heartbeat blob in the batch
		wantCPU   float64 // CPU of the stored heartbeat after the flush
	}{
		{name: "first heartbeat", at: 1 * time.Second, hb: hb(10, true, "app:1"), wantWrite: true, wantCPU: 10},
		{name: "only CPU changed", at: 10 * time.Second, hb: hb(20, true, "app:1"), wantCPU: 10},
		{name: "app turns unhealthy", at: 20 * time.Second, hb: hb(30, false, "app:1"), wantWrite: true, wantCPU: 30},
		{name: "still unhealthy", at: 30 * time.Second, hb: hb(40, false, "app:1"), wantCPU: 30},
		{name: "container image changes", at: 40 * time.Second, hb: hb(50, false, "app:2"), wantWrite: true, wantCPU: 50},
		{name: "unchanged, 59s after the last write", at: 99 * time.Second, hb: hb(60, false, "app:2"), wantCPU: 50},
		{name: "unchanged, 1m after the last write", at: 100 * time.Second, hb: hb(70, false, "app:2"), wantWrite: true, wantCPU: 70},
		{name: "unchanged, right after", at: 101 * time.Second, hb: hb(80, false, "app:2"), wantCPU: 70},
		{name: "app recovers", at: 102 * time.Second, hb: hb(90, true, "app:2"), wantWrite: true, wantCPU: 90},
		{name: "app section disappears", at: 103 * time.Second, hb: &flotillav1.Heartbeat{Host: &flotillav1.HostMetrics{CpuPercent: 5}, Containers: containers("app:2")}, wantWrite: true, wantCPU: 5},
	}
	real := openStore(t)
	st := &recordingStore{Store: real}
	clk := newClock(t0)
	r := newRegistry(t, st, clk)
	register(t, real, r, "a1", t0, nil, nil)
	s := mustAttach(t, r, "a1", nil, "10.0.0.1:5000")
	defer r.Detach(s, reasonEOF)
	mustFlush(t, r) // the attach itself
	st.takeBatches()
	for _, step := range steps {
		clk.Set(at(step.at))
		mustHeartbeat(t, r, s, step.hb)
		mustFlush(t, r)
		batches := st.takeBatches()
		wrote := len(batches) == 1 && len(batches[0]) == 1 && batches[0][0].LastHeartbeat != nil
		if wrote != step.wantWrite || len(batches) > 1 {
			t.Errorf("%s (t0+%s): heartbeat written = %v (%d batches), want %v", step.name, step.at, wrote, len(batches), step.wantWrite)
		}
		if got := decodeHeartbeat(t, mustStored(t, real, "a1").LastHeartbeat).GetHost().GetCpuPercent(); got != step.wantCPU {
			t.Errorf("%s (t0+%s): stored CPU %v, want %v", step.name, step.at, got, step.wantCPU)
		}
		// The live view always has the newest reading.
		live := mustGet(t, r, "a1")
		if !proto.Equal(live.LastHeartbeat, step.hb) || !live.HeartbeatAt.Equal(at(step.at)) {
			t.Errorf("%s: live heartbeat %v at %s, want the one just sent at %s", step.name, live.LastHeartbeat, live.HeartbeatAt, at(step.at))
		}
	}
}

// TestFlushFailureKeepsChangesPending fails the store once: nothing may be
// lost, neither the status nor the hello and heartbeat blobs.
func TestFlushFailureKeepsChangesPending(t *testing.T) {
	real := openStore(t)
	st := &recordingStore{Store: real}
	clk := newClock(t0)
	r := newRegistry(t, st, clk)
	register(t, real, r, "a1", t0, nil, nil)
	register(t, real, r, "a2", t0, nil, nil)
	clk.Set(at(time.Second))
	s := mustAttach(t, r, "a1", map[string]string{"role": "web"}, "10.0.0.1:5000")
	defer r.Detach(s, reasonEOF)
	hb := heartbeatMsg(42, true)
	mustHeartbeat(t, r, s, hb)

	st.failOnce()
	err := r.Flush(context.Background())
	if !errors.Is(err, errStoreDown) {
		t.Fatalf("Flush = %v, want the store's error", err)
	}
	if got := mustStored(t, real, "a1"); got.State != store.AgentDisconnected || got.Hello != nil {
		t.Fatalf("failed flush wrote: state %s hello %v", got.State, got.Hello)
	}

	// A change made between the failed flush and the retry.
	clk.Set(at(2 * time.Second))
	s2 := mustAttach(t, r, "a2", nil, "10.0.0.2:5000")
	defer r.Detach(s2, reasonEOF)

	mustFlush(t, r)
	batches := st.takeBatches()
	if len(batches) != 2 {
		t.Fatalf("store called %d times, want 2 (failed, retried)", len(batches))
	}
	if got := batchIDs(batches[0]); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("failed batch = %v, want [a1]", got)
	}
	retry := batchIDs(batches[1])
	slices.Sort(retry)
	if !slices.Equal(retry, []string{"a1", "a2"}) {
		t.Errorf("retried batch = %v, want [a1 a2]", retry)
	}

	got := mustStored(t, real, "a1")
	if got.State != store.AgentConnected || got.PeerAddress != "10.0.0.1:5000" || !got.LastSeenAt.Equal(at(time.Second)) {
		t.Errorf("stored a1 after retry: state %s peer %q last seen %s", got.State, got.PeerAddress, got.LastSeenAt)
	}
	if h := decodeHello(t, got.Hello); !proto.Equal(h, helloMsg("a1", map[string]string{"role": "web"})) {
		t.Errorf("stored a1 hello after a failed then successful flush = %v, want the agent's hello", h)
	}
	if h := decodeHeartbeat(t, got.LastHeartbeat); !proto.Equal(h, hb) {
		t.Errorf("stored a1 heartbeat after a failed then successful flush = %v, want %v", h, hb)
	}
	if got := mustStored(t, real, "a2"); got.State != store.AgentConnected {
		t.Errorf("stored a2 state %s, want connected", got.State)
	}
	// Everything is written now.
	mustFlush(t, r)
	if b := st.takeBatches(); len(b) != 0 {
		t.Errorf("third Flush wrote %d batches, want none", len(b))
	}
}
