package backups

import (
	"context"
	"sync"
	"testing"
)

// staleLog collects what OnStale is told.
type staleLog struct {
	mu  sync.Mutex
	got []Stale
}

func (l *staleLog) add(_ context.Context, st Stale) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, st)
}

func (l *staleLog) all() []Stale {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Stale(nil), l.got...)
}

// A nightly policy (02:00 UTC) is stale an hour after a slot passes
// without a full success, reported once per episode however many ticks
// (and schedulers) see it; a success ends the episode, the next stale
// slot starts another. A paused policy is not reported.
func TestStaleReportedOncePerEpisode(t *testing.T) {
	h := newHarness(t, "db-1")
	stale := &staleLog{}
	newScheduler := func() *Scheduler {
		s, err := NewScheduler(SchedulerConfig{Store: h.st, Commands: h.cmds, Now: h.clock.Now, Jobs: h.jobs, OnStale: stale.add})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	h.sched = newScheduler()
	putPolicy(t, h.st, nightly("nightly"), utc("2026-11-20T12:00:00Z"))
	paused := nightly("paused")
	paused.Paused = true
	putPolicy(t, h.st, paused, utc("2026-11-20T12:00:00Z"))

	h.tick("2026-11-21T02:00:05Z") // the run starts
	first := h.run("nightly").CommandID
	h.cmds.finish(first, utc("2026-11-21T02:10:00Z"), "db-1")
	h.tick("2026-11-21T02:10:05Z")
	h.tick("2026-11-21T02:59:59Z")
	if got := stale.all(); len(got) != 0 {
		t.Fatalf("within the hour after the slot: stale %v", got)
	}
	h.tick("2026-11-21T03:00:01Z")
	h.tick("2026-11-21T03:00:16Z")
	h.tick("2026-11-21T09:00:00Z")
	got := stale.all()
	if len(got) != 1 {
		t.Fatalf("stale reported %d times in one episode, want once: %v", len(got), got)
	}
	if st := got[0]; st.Policy != "nightly" || st.Database != "shop" || !st.FirstEver || !st.LastSuccess.Equal(utc("2026-11-20T12:00:00Z")) ||
		!st.Due.Equal(utc("2026-11-21T02:00:00Z")) || !st.Deadline.Equal(utc("2026-11-21T03:00:00Z")) ||
		st.LastCommandID != first || st.LastMessage == "" {
		t.Errorf("stale = %+v", st)
	}
	// Another scheduler (a new lease holder, a restart) sees the same
	// episode: it reports it with the same last success, from which the
	// event's ID (and the outbox's deduplication) comes.
	h.sched = newScheduler()
	h.tick("2026-11-21T09:00:15Z")
	if got := stale.all(); len(got) != 2 || !got[1].LastSuccess.Equal(got[0].LastSuccess) {
		t.Fatalf("after a change of scheduler: %v, want the same episode again", got)
	}

	// The next night succeeds: the episode ends; the night after fails and
	// is a new episode.
	h.tick("2026-11-22T02:00:05Z")
	second := h.run("nightly").CommandID
	h.cmds.finish(second, utc("2026-11-22T02:10:00Z"))
	h.tick("2026-11-22T02:10:05Z")
	success := h.run("nightly").LastSuccessAt
	h.tick("2026-11-22T12:00:00Z")
	h.tick("2026-11-23T02:00:05Z")
	third := h.run("nightly").CommandID
	h.tick("2026-11-23T02:59:00Z")
	if got := stale.all(); len(got) != 2 {
		t.Fatalf("after a success, before the next slot's hour: %v", got)
	}
	h.tick("2026-11-23T03:00:05Z") // the run is still in progress
	got = stale.all()
	if len(got) != 3 || got[2].FirstEver || !got[2].LastSuccess.Equal(success) || got[2].Running != third ||
		!got[2].Due.Equal(utc("2026-11-23T02:00:00Z")) {
		t.Fatalf("second episode: %+v, want one from the success at %s with run %s in progress", got, success, third)
	}
	for _, st := range got {
		if st.Policy == "paused" {
			t.Errorf("a paused policy was reported stale: %+v", st)
		}
	}
}
