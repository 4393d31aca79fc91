package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// testUpdateRolloutFence writes rollout transitions under fences: the
// holder's live lease writes; a fence with another token, another holder,
// an expired lease or no lease at all returns ErrFenced and writes nothing
// (no state, host, event or command); a nil fence writes unconditionally.
func testUpdateRolloutFence(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	mustPutService(t, s, "web", t0)
	if _, err := s.CreateRollout(ctx, testRollout("ro-1", "web", t0), testHosts("ro-1", "web-a"), []store.RolloutEvent{event("created", t0)}); err != nil {
		t.Fatal(err)
	}
	a := mustAcquire(t, s, "rollout/ro-1", "a", time.Minute)
	var (
		refused []string // IDs of the commands of refused writes
		n       int
	)
	write := func(f *store.Fence, msg string) error {
		r := testRollout("ro-1", "web", t0)
		r.Message = msg
		h := testHosts("ro-1", "web-a")[0]
		h.Message = msg
		cmd := newHostCommand("", "web-a", t0)
		n++
		cmd.ID = fmt.Sprintf("ro-1.web-a.%s.%d", msg, n)
		_, err := s.UpdateRollout(ctx, store.RolloutUpdate{RolloutID: "ro-1", Rollout: &r, Hosts: []store.RolloutHost{h},
			Events: []store.RolloutEvent{event(msg, t0)}, Commands: []store.HostCommand{cmd}, Fence: f})
		if err != nil {
			refused = append(refused, cmd.ID)
		}
		return err
	}
	if err := write(store.FenceOf(a), "under-a"); err != nil {
		t.Fatalf("UpdateRollout under the holder's live lease = %v", err)
	}
	for _, tc := range []struct {
		name  string
		fence store.Fence
	}{
		{"other token", store.Fence{Name: a.Name, Holder: a.Holder, Token: a.Token + 1}},
		{"other holder", store.Fence{Name: a.Name, Holder: "b", Token: a.Token}},
		{"no such lease", store.Fence{Name: "rollout/ro-2", Holder: "a", Token: 1}},
	} {
		if err := write(&tc.fence, "refused"); !errors.Is(err, store.ErrFenced) {
			t.Errorf("%s: UpdateRollout = %v, want ErrFenced", tc.name, err)
		}
	}
	// The lease expires, then moves to b: a's fence is refused from the
	// expiry on, b's is taken.
	short := mustAcquire(t, s, "rollout/ro-1", "a", 30*time.Millisecond)
	waitUntilFenced(t, func() error { return write(store.FenceOf(short), "short") })
	b := mustAcquire(t, s, "rollout/ro-1", "b", time.Minute)
	if err := write(store.FenceOf(a), "refused"); !errors.Is(err, store.ErrFenced) {
		t.Errorf("UpdateRollout under a's fence after b took the lease = %v, want ErrFenced", err)
	}
	if err := write(store.FenceOf(b), "under-b"); err != nil {
		t.Fatalf("UpdateRollout under b's lease = %v", err)
	}
	if err := write(nil, "unfenced"); err != nil {
		t.Fatalf("UpdateRollout without a fence = %v", err)
	}
	checkFencedWroteNothing(t, s, refused)
}

// waitUntilFenced retries write until it returns ErrFenced (the lease
// expired by the database's clock); any other error fails the test.
func waitUntilFenced(t *testing.T, write func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := write()
		switch {
		case errors.Is(err, store.ErrFenced):
			return
		case err != nil:
			t.Fatalf("UpdateRollout under a lease about to expire = %v, want nil or ErrFenced", err)
		case time.Now().After(deadline):
			t.Fatal("a 30ms lease still let writes through after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkFencedWroteNothing checks that no refused write left anything: no
// event named "refused", no command of a refused write, and the rollout's
// and host's messages are the last accepted write's.
func checkFencedWroteNothing(t *testing.T, s store.Store, refused []string) {
	t.Helper()
	ctx := context.Background()
	evs, err := s.ListRolloutEvents(ctx, "ro-1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if e := string(ev.Event); e != "short" {
			got = append(got, string(ev.Event))
		}
	}
	// Writes under the short lease before it expired wrote "short" events;
	// only these are expected besides them.
	want := map[string]bool{"created": true, "under-a": true, "under-b": true, "unfenced": true}
	if len(got) != len(want) {
		t.Errorf("events other than the short lease's = %v, want created, under-a, under-b, unfenced", got)
	}
	for _, g := range got {
		if !want[g] {
			t.Errorf("unexpected event %q", g)
		}
	}
	if r, err := s.GetRollout(ctx, "ro-1"); err != nil || r.Message != "unfenced" {
		t.Errorf("rollout message = %q, %v; want the last accepted write's, unfenced", r.Message, err)
	}
	if hs, err := s.ListRolloutHosts(ctx, "ro-1"); err != nil || len(hs) != 1 || hs[0].Message != "unfenced" {
		t.Errorf("rollout hosts = %+v, %v; want web-a with the last accepted write's message", hs, err)
	}
	for _, id := range refused {
		if _, err := s.GetHostCommand(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("command %s of a refused write: GetHostCommand = %v, want ErrNotFound", id, err)
		}
	}
}
