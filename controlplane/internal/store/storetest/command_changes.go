package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

func mustChanges(tb testing.TB, s store.Store, after int64, limit int) []store.HostCommand {
	tb.Helper()
	hcs, err := s.ListHostCommandChanges(context.Background(), after, limit)
	if err != nil {
		tb.Fatalf("ListHostCommandChanges(%d, %d): %v", after, limit, err)
	}
	return hcs
}

// testHostCommandChanges: every insert and update gives the command the
// next change seq, and the changes after a seq are what was written since.
func testHostCommandChanges(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	if got, err := s.LastHostCommandChange(ctx); err != nil || got != 0 {
		t.Fatalf("LastHostCommandChange on an empty store = %d, %v; want 0", got, err)
	}
	a, b, c := newHostCommand("cmd-1", "a", t0), newHostCommand("cmd-1", "b", t0), newHostCommand("cmd-1", "c", t0)
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-1", t0, 1), a, b, c)
	all := mustChanges(t, s, 0, 0)
	if got := hostIDs(all); !slices.Equal(got, []string{a.ID, b.ID, c.ID}) {
		t.Fatalf("changes after 0 = %v, want the three commands in insert order", got)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ChangeSeq <= all[i-1].ChangeSeq {
			t.Fatalf("change seqs not increasing: %d then %d", all[i-1].ChangeSeq, all[i].ChangeSeq)
		}
	}
	if got := hostIDs(mustChanges(t, s, all[0].ChangeSeq, 1)); !slices.Equal(got, []string{b.ID}) {
		t.Fatalf("changes after the first, limit 1 = %v, want [%s]", got, b.ID)
	}
	last := all[2].ChangeSeq

	a.State, a.ReleasedAt, a.Deadline, a.CancelReason = 2, t0.Add(time.Second), t0.Add(time.Minute), "operator changed their mind"
	if err := s.UpdateHostCommands(ctx, []store.HostCommand{a}, nil, nil); err != nil {
		t.Fatal(err)
	}
	changed := mustChanges(t, s, last, 0)
	if len(changed) != 1 || changed[0].ID != a.ID || changed[0].ChangeSeq <= last {
		t.Fatalf("changes after an update of %s = %+v, want it alone with a seq above %d", a.ID, changed, last)
	}
	assertEqual(t, changed[0], a)
	assertEqual(t, mustGetHostCommand(t, s, a.ID), a)
	kept := a
	kept.CancelReason, kept.State = "", 3
	if err := s.UpdateHostCommands(ctx, []store.HostCommand{kept}, nil, nil); err != nil {
		t.Fatal(err)
	}
	kept.CancelReason = a.CancelReason
	assertEqual(t, mustGetHostCommand(t, s, a.ID), kept)
	changed = mustChanges(t, s, last, 0)

	// A command created on its own (the rollout engine's) follows.
	r := newHostCommand("", "d", t0)
	if err := s.CreateHostCommands(ctx, []store.HostCommand{r}); err != nil {
		t.Fatal(err)
	}
	if got := hostIDs(mustChanges(t, s, changed[0].ChangeSeq, 0)); !slices.Equal(got, []string{r.ID}) {
		t.Fatalf("changes after the update = %v, want [%s]", got, r.ID)
	}
	lastSeq := mustGetHostCommand(t, s, r.ID).ChangeSeq
	if got := mustChanges(t, s, lastSeq, 0); len(got) != 0 {
		t.Fatalf("changes after the last = %v, want none", hostIDs(got))
	}
	if got, err := s.LastHostCommandChange(ctx); err != nil || got != lastSeq {
		t.Fatalf("LastHostCommandChange = %d, %v; want %d", got, err, lastSeq)
	}
}

// raceFollow runs writers goroutines making writes each with write while
// follow reads what they wrote, until they are done; then follows once
// more.
func raceFollow(t *testing.T, writers, writes int, write func(w, n int) error, follow func()) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range writes {
				if err := write(w, n); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for following := true; following; {
		select {
		case <-done:
			following = false
		default:
		}
		follow()
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	follow()
}

// testHostCommandChangesConcurrentWriters: a reader following the changes
// (or the reports) while writers race never steps over a row committed
// after it read a higher seq. Each write creates a row that is never
// written again, so one stepped over is never seen.
func testHostCommandChangesConcurrentWriters(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	const writers, writes = 8, 50
	var cursor, reportCursor int64
	seen, reported := map[string]bool{}, map[string]bool{}
	raceFollow(t, writers, writes, func(w, n int) error {
		hc := newHostCommand("", fmt.Sprintf("agent-%d-%d", w, n), t0)
		if err := s.CreateHostCommands(ctx, []store.HostCommand{hc}); err != nil {
			return err
		}
		return s.AddCommandReports(ctx, []store.CommandReport{{CommandID: hc.ID, AgentID: hc.AgentID, Event: []byte{1}, ReceivedAt: t0}})
	}, func() {
		for _, hc := range mustChanges(t, s, cursor, 0) {
			seen[hc.ID], cursor = true, hc.ChangeSeq
		}
		reports, err := s.ListCommandReports(ctx, reportCursor, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reports {
			reported[r.CommandID], reportCursor = true, r.Seq
		}
	})
	if len(seen) != writers*writes || len(reported) != writers*writes {
		t.Errorf("the reader saw %d commands and %d reports of the %d written (the others were stepped over)",
			len(seen), len(reported), writers*writes)
	}
}

func testListAgentActiveHostCommands(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	queued := newHostCommand("cmd-1", "a", t0)
	released := newHostCommand("cmd-2", "a", t0.Add(time.Second))
	released.ReleasedAt, released.Deadline = t0.Add(time.Second), t0.Add(time.Minute)
	finished := newHostCommand("cmd-3", "a", t0)
	finished.ReleasedAt, finished.State, finished.FinishedAt = t0, 4, t0.Add(time.Second)
	other := newHostCommand("cmd-2", "b", t0)
	other.ReleasedAt = t0
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-1", t0, 1), queued)
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-2", t0, 1), released, other)
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-3", t0, 1), finished)
	got, err := s.ListAgentActiveHostCommands(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("ListAgentActiveHostCommands(a) = %v, want [%s] (released, unfinished)", hostIDs(got), released.ID)
	}
	assertEqual(t, got[0], released)
	if got, err := s.ListAgentActiveHostCommands(ctx, "nobody"); err != nil || len(got) != 0 {
		t.Fatalf("ListAgentActiveHostCommands(nobody) = %v, %v; want none", hostIDs(got), err)
	}
}

func testCommandReports(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	active := newHostCommand("cmd-1", "a", t0)
	old := newHostCommand("cmd-1", "b", t0)
	old.State, old.FinishedAt = 4, t0.Add(time.Second)
	recent := newHostCommand("cmd-1", "c", t0)
	recent.State, recent.FinishedAt = 4, t0.Add(time.Hour)
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-1", t0, 1), active, old, recent)
	in := []store.CommandReport{
		{CommandID: active.ID, AgentID: "a", Event: []byte{1}, ReceivedAt: t0},
		{CommandID: old.ID, AgentID: "b", Event: []byte{2}, ReceivedAt: t0},
		{CommandID: recent.ID, AgentID: "c", Event: []byte{3}, ReceivedAt: t0},
		{CommandID: "gone.x", AgentID: "x", Event: []byte{4}, ReceivedAt: t0},
	}
	if err := s.AddCommandReports(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListCommandReports(ctx, 0, 0)
	if err != nil || len(got) != len(in) {
		t.Fatalf("ListCommandReports = %+v, %v; want %d reports", got, err, len(in))
	}
	for i := range got {
		if i > 0 && got[i].Seq <= got[i-1].Seq {
			t.Fatalf("report seqs not increasing: %d then %d", got[i-1].Seq, got[i].Seq)
		}
		want := in[i]
		want.Seq = got[i].Seq
		assertEqual(t, got[i], want)
	}
	if page, err := s.ListCommandReports(ctx, got[0].Seq, 2); err != nil || len(page) != 2 || page[0].Seq != got[1].Seq {
		t.Fatalf("ListCommandReports(after the first, 2) = %+v, %v; want the second and third", page, err)
	}
	byID, err := s.ListCommandReportsFor(ctx, []string{recent.ID, "nope", active.ID})
	if err != nil || len(byID) != 2 || byID[0].Seq != got[0].Seq || byID[1].Seq != got[2].Seq {
		t.Fatalf("ListCommandReportsFor(recent, nope, active) = %+v, %v; want the active and the recent command's, by seq", byID, err)
	}
	n, err := s.PruneCommandReports(ctx, t0.Add(time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("PruneCommandReports = %d, %v; want 2 (the old command's and the unknown one's)", n, err)
	}
	left, err := s.ListCommandReports(ctx, 0, 0)
	if err != nil || len(left) != 2 || left[0].CommandID != active.ID || left[1].CommandID != recent.ID {
		t.Fatalf("reports left = %+v, %v; want the active and the recent command's", left, err)
	}
	// A seq is never reused, even once the highest was pruned.
	if _, err := s.PruneCommandReports(ctx, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCommandReports(ctx, in[:1]); err != nil {
		t.Fatal(err)
	}
	if again, err := s.ListCommandReports(ctx, got[3].Seq, 0); err != nil || len(again) != 1 {
		t.Fatalf("reports after the highest pruned seq = %+v, %v; want the new one", again, err)
	}
}

func testUpdateFleetCommandFenced(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-1", t0, 1))
	l := mustAcquire(t, s, "command/cmd-1", "a", time.Minute)
	if err := s.UpdateFleetCommand(ctx, "cmd-1", 2, time.Time{}, "", store.FenceOf(l)); err != nil {
		t.Fatalf("UpdateFleetCommand under a held lease: %v", err)
	}
	for name, f := range map[string]*store.Fence{
		"another token":  {Name: l.Name, Holder: "a", Token: l.Token + 1},
		"another holder": {Name: l.Name, Holder: "b", Token: l.Token},
		"no such lease":  {Name: "command/cmd-2", Holder: "a", Token: 1},
	} {
		if err := s.UpdateFleetCommand(ctx, "cmd-1", 3, t0, "{}", f); !errors.Is(err, store.ErrFenced) {
			t.Errorf("UpdateFleetCommand with %s = %v, want ErrFenced", name, err)
		}
	}
	if err := s.ReleaseLease(ctx, l.Name, "a", l.Token); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateFleetCommand(ctx, "cmd-1", 3, t0, "{}", store.FenceOf(l)); !errors.Is(err, store.ErrFenced) {
		t.Errorf("UpdateFleetCommand once the lease is released = %v, want ErrFenced", err)
	}
	if fc := mustGetFleetCommand(t, s, "cmd-1"); fc.State != 2 || fc.Summary != "" {
		t.Errorf("a fenced write changed the command: %+v", fc)
	}
}

// Host command writes under fences (issue 13: a replica that lost a fleet
// command's lease must not write its hosts' states): written while every
// fence holds, nothing written when one does not, and the refusal names
// the lease that moved.
func testUpdateHostCommandsFenced(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	web1, web2 := newHostCommand("cmd-1", "web-1", t0), newHostCommand("cmd-1", "web-2", t0)
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-1", t0, 1), web1, web2)
	other := newHostCommand("cmd-2", "web-1", t0)
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-2", t0, 1), other)
	l1 := mustAcquire(t, s, "command/cmd-1", "a", time.Minute)
	l2 := mustAcquire(t, s, "command/cmd-2", "a", time.Minute)
	fences := map[string]*store.Fence{web1.ID: store.FenceOf(l1), web2.ID: store.FenceOf(l1), other.ID: store.FenceOf(l2)}

	running := func(h store.HostCommand, msg string) store.HostCommand {
		h.State, h.Message, h.ReleasedAt, h.StartedAt = 3, msg, t0.Add(time.Second), t0.Add(2*time.Second)
		return h
	}
	held := []store.HostCommand{running(web1, "held"), running(other, "held")}
	if err := s.UpdateHostCommands(ctx, held, fences, nil); err != nil {
		t.Fatalf("UpdateHostCommands under held leases: %v", err)
	}
	assertEqual(t, mustGetHostCommand(t, s, web1.ID), held[0])

	// cmd-1's lease moves to b: a write of cmd-1's hosts and cmd-2's in one
	// call writes neither, and names cmd-1's lease.
	if err := s.ReleaseLease(ctx, l1.Name, "a", l1.Token); err != nil {
		t.Fatal(err)
	}
	lb := mustAcquire(t, s, "command/cmd-1", "b", time.Minute)
	late := []store.HostCommand{running(other, "late"), running(web2, "late")}
	err := s.UpdateHostCommands(ctx, late, fences, nil)
	var fe *store.FencedError
	if !errors.Is(err, store.ErrFenced) || !errors.As(err, &fe) || fe.Fence != *store.FenceOf(l1) {
		t.Fatalf("UpdateHostCommands under a lease that moved = %v, want a FencedError of %s token %d", err, l1.Name, l1.Token)
	}
	assertEqual(t, mustGetHostCommand(t, s, other.ID), held[1])
	assertEqual(t, mustGetHostCommand(t, s, web2.ID), web2)

	// The new holder writes; so does a write without fences.
	fences[web2.ID] = store.FenceOf(lb)
	if err := s.UpdateHostCommands(ctx, late, fences, nil); err != nil {
		t.Fatalf("UpdateHostCommands under the new holder's lease: %v", err)
	}
	assertEqual(t, mustGetHostCommand(t, s, web2.ID), late[1])
	unfenced := running(web1, "unfenced")
	if err := s.UpdateHostCommands(ctx, []store.HostCommand{unfenced}, nil, nil); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, mustGetHostCommand(t, s, web1.ID), unfenced)
}

// testCommandEvents: events written with host command changes (or alone)
// are listed per fleet command after a seq, in order; ReadFleetCommand
// gives the seq of the last one with the command and its hosts; a fenced
// write stores none; the events of a command finished long enough ago are
// pruned.
func testCommandEvents(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	web1 := newHostCommand("cmd-1", "web-1", t0)
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-1", t0, 1), web1)
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-2", t0, 1), newHostCommand("cmd-2", "web-1", t0))
	if _, _, last, err := s.ReadFleetCommand(ctx, "cmd-1"); err != nil || last != 0 {
		t.Fatalf("ReadFleetCommand before any event: last %d, %v; want 0", last, err)
	}
	ev := func(fc, body string) store.CommandEvent {
		return store.CommandEvent{FleetCommandID: fc, AgentID: "web-1", Event: []byte(body), CreatedAt: t0}
	}
	running := web1
	running.State, running.Message = 3, "running"
	if err := s.UpdateHostCommands(ctx, []store.HostCommand{running}, nil, []store.CommandEvent{ev("cmd-1", "a"), ev("cmd-2", "x"), ev("cmd-1", "b")}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateHostCommands(ctx, nil, nil, []store.CommandEvent{ev("cmd-1", "c")}); err != nil { // progress only
		t.Fatal(err)
	}
	// A write under a fence that does not hold stores neither.
	f := &store.Fence{Name: "command/cmd-1", Holder: "nobody", Token: 1}
	err := s.UpdateHostCommands(ctx, []store.HostCommand{running}, map[string]*store.Fence{web1.ID: f}, []store.CommandEvent{ev("cmd-1", "fenced")})
	if !errors.Is(err, store.ErrFenced) {
		t.Fatalf("fenced write = %v, want ErrFenced", err)
	}
	// So does a fenced event alone (progress of a command whose lease moved).
	progress := ev("cmd-1", "fenced progress")
	progress.CommandID = web1.ID
	if err := s.UpdateHostCommands(ctx, nil, map[string]*store.Fence{web1.ID: f}, []store.CommandEvent{progress}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("fenced progress = %v, want ErrFenced", err)
	}
	all, err := s.ListCommandEvents(ctx, "cmd-1", 0, 0)
	if err != nil || len(all) != 3 || string(all[0].Event) != "a" || string(all[1].Event) != "b" || string(all[2].Event) != "c" {
		t.Fatalf("ListCommandEvents(cmd-1) = %+v, %v; want a, b, c", all, err)
	}
	if all[0].Seq >= all[1].Seq || all[1].Seq >= all[2].Seq || all[0].AgentID != "web-1" || !all[0].CreatedAt.Equal(t0) {
		t.Errorf("events = %+v; want increasing seqs, the agent and the time written", all)
	}
	if after, err := s.ListCommandEvents(ctx, "cmd-1", all[0].Seq, 1); err != nil || len(after) != 1 || string(after[0].Event) != "b" {
		t.Errorf("ListCommandEvents after the first, limit 1 = %+v, %v; want b", after, err)
	}
	fc, hcs, last, err := s.ReadFleetCommand(ctx, "cmd-1")
	if err != nil || fc.ID != "cmd-1" || len(hcs) != 1 || hcs[0].Message != "running" || last != all[2].Seq {
		t.Fatalf("ReadFleetCommand = %s, %+v, last %d, %v; want cmd-1, its running host, last %d", fc.ID, hcs, last, err, all[2].Seq)
	}
	if _, _, _, err := s.ReadFleetCommand(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadFleetCommand(unknown) = %v, want ErrNotFound", err)
	}
	// cmd-1 finishes at t0+1m; pruning what finished before t0+1h removes
	// its events only.
	if err := s.UpdateFleetCommand(ctx, "cmd-1", 2, t0.Add(time.Minute), "{}", nil); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneCommandEvents(ctx, t0); err != nil || n != 0 {
		t.Errorf("PruneCommandEvents(before the end) = %d, %v; want 0", n, err)
	}
	if n, err := s.PruneCommandEvents(ctx, t0.Add(time.Hour)); err != nil || n != 3 {
		t.Errorf("PruneCommandEvents = %d, %v; want cmd-1's 3", n, err)
	}
	if left, err := s.ListCommandEvents(ctx, "cmd-2", 0, 0); err != nil || len(left) != 1 {
		t.Errorf("cmd-2's events after the prune = %+v, %v; want its one", left, err)
	}
}
