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

// testRolloutControls stores operators' requests, lists the pending ones
// in order, answers them once under the driver's fence (a stale fence is
// refused and answers nothing) and reads the answers back.
func testRolloutControls(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	mustPutService(t, s, "web", t0)
	if _, err := s.CreateRollout(ctx, testRollout("ro-1", "web", t0), testHosts("ro-1", "web-a"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRolloutControl(ctx, store.RolloutControl{RolloutID: "ro-9", Op: "pause", RequestedAt: t0}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CreateRolloutControl of an unknown rollout = %v, want ErrNotFound", err)
	}
	pause, err := s.CreateRolloutControl(ctx, store.RolloutControl{RolloutID: "ro-1", Op: "pause", Reason: "look at graphs", RequestedAt: t0,
		Code: 9, Answer: "ignored", AnsweredAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	abort, err := s.CreateRolloutControl(ctx, store.RolloutControl{RolloutID: "ro-1", Op: "abort", Rollback: true, RequestedAt: t0.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	want := store.RolloutControl{Seq: pause.Seq, RolloutID: "ro-1", Op: "pause", Reason: "look at graphs", RequestedAt: t0}
	assertEqual(t, pause, want)
	if abort.Seq <= pause.Seq {
		t.Fatalf("seq of the second request = %d, want above %d", abort.Seq, pause.Seq)
	}
	pending, err := s.ListPendingRolloutControls(ctx, "ro-1")
	if err != nil || len(pending) != 2 || pending[0].Seq != pause.Seq || pending[1].Seq != abort.Seq || !pending[1].Rollback {
		t.Fatalf("ListPendingRolloutControls = %+v, %v; want pause then abort", pending, err)
	}
	l := mustAcquire(t, s, "rollout/ro-1", "driver", time.Minute)
	answered := pause
	answered.AnsweredAt, answered.Code, answered.Answer = t0.Add(2*time.Second), 9, "rollout ro-1 is paused already"
	stale := &store.Fence{Name: l.Name, Holder: "old-driver", Token: l.Token}
	if err := s.AnswerRolloutControl(ctx, answered, stale); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("AnswerRolloutControl under a stale fence = %v, want ErrFenced", err)
	}
	if err := s.AnswerRolloutControl(ctx, answered, store.FenceOf(l)); err != nil {
		t.Fatalf("AnswerRolloutControl = %v", err)
	}
	second := answered
	second.Code, second.Answer = 0, ""
	if err := s.AnswerRolloutControl(ctx, second, store.FenceOf(l)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second answer = %v, want ErrConflict", err)
	}
	if err := s.AnswerRolloutControl(ctx, store.RolloutControl{Seq: abort.Seq + 100, AnsweredAt: t0}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("answer to an unknown request = %v, want ErrNotFound", err)
	}
	got, err := s.GetRolloutControl(ctx, pause.Seq)
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, got, answered)
	if _, err := s.GetRolloutControl(ctx, abort.Seq+100); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRolloutControl of an unknown request = %v, want ErrNotFound", err)
	}
	if pending, err := s.ListPendingRolloutControls(ctx, "ro-1"); err != nil || len(pending) != 1 || pending[0].Seq != abort.Seq {
		t.Fatalf("pending after the pause's answer = %+v, %v; want the abort", pending, err)
	}
}
