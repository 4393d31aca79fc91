package backups

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
)

type harness struct {
	t     *testing.T
	st    store.Store
	clock *clock
	cmds  *fakeCommands
	sched *Scheduler
	jobs  []Job
}

func newHarness(t *testing.T, agents ...string) *harness {
	h := &harness{t: t, st: openStore(t), clock: &clock{}, cmds: newFakeCommands(agents...)}
	h.jobs = []Job{BackupJob(h.st, nil)}
	h.sched = h.scheduler()
	return h
}

// scheduler is another scheduler on the same store and commands (another
// control plane, or the same one restarted).
func (h *harness) scheduler() *Scheduler {
	s, err := NewScheduler(SchedulerConfig{Store: h.st, Commands: h.cmds, Now: h.clock.Now, Jobs: h.jobs})
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *harness) tick(at string) {
	h.t.Helper()
	h.clock.Set(utc(at))
	if err := h.sched.Tick(context.Background()); err != nil {
		h.t.Fatalf("tick at %s: %v", at, err)
	}
}

func (h *harness) run(policy string) store.BackupPolicyRun {
	h.t.Helper()
	runs, err := h.st.ListBackupPolicyRuns(context.Background(), policy)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, r := range runs {
		if r.Job == store.BackupJobBackup {
			return r
		}
	}
	return store.BackupPolicyRun{}
}

func nightly(name string) *flotillav1.BackupPolicy {
	return &flotillav1.BackupPolicy{Name: name, Selector: "role=db", Database: "shop", DrillsDisabled: true}
}

// A control plane away for ten days runs the policy once when it is back,
// for the latest missed slot, and then on schedule.
func TestMissedRunsRunOnce(t *testing.T) {
	h := newHarness(t, "db-1")
	putPolicy(t, h.st, nightly("nightly"), utc("2026-11-20T12:00:00Z"))
	h.tick("2026-11-20T12:00:01Z")
	if got := h.cmds.startedIDs(); len(got) != 0 {
		t.Fatalf("before the first slot: started %v", got)
	}
	h.tick("2026-11-30T08:00:00Z")
	h.tick("2026-11-30T08:00:15Z")
	started := h.cmds.startedIDs()
	if len(started) != 1 {
		t.Fatalf("after ten days away: started %v, want one run", started)
	}
	if r := h.run("nightly"); !r.LastSlot.Equal(utc("2026-11-30T02:00:00Z")) || r.CommandID != started[0] {
		t.Errorf("run = %+v, want slot 2026-11-30T02:00 and command %s", r, started[0])
	}
	req := h.cmds.reqs[started[0]]
	if req.GetSelector() != "role=db" || req.GetSpec().GetBackup().GetDatabase() != "shop" || !strings.Contains(req.GetReason(), "backup policy nightly") {
		t.Errorf("request = %v", req)
	}
	h.cmds.finish(started[0], utc("2026-11-30T08:01:00Z"))
	h.tick("2026-11-30T08:01:15Z")
	h.tick("2026-11-30T20:00:00Z")
	if got := h.cmds.startedIDs(); len(got) != 1 {
		t.Fatalf("before the next slot: started %v", got)
	}
	r := h.run("nightly")
	if r.CommandID != "" || r.LastCommandID != started[0] || !r.LastSucceeded || !r.LastSuccessAt.Equal(utc("2026-11-30T08:01:15Z")) {
		t.Errorf("finished run = %+v", r)
	}
	if got, want := listedIDs(t, h.st, store.BackupQuery{Policy: "nightly"}), []string{started[0] + ".db-1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("catalog = %v, want %v", got, want)
	}
	h.tick("2026-12-01T02:00:00Z")
	if got := h.cmds.startedIDs(); len(got) != 2 {
		t.Errorf("at the next slot: started %v, want a second run", got)
	}
}

// Two runs of one policy never overlap: while a run goes on, its slots
// pass without a second one, and one run follows for the latest of them.
func TestRunsNeverOverlap(t *testing.T) {
	h := newHarness(t, "db-1", "db-2")
	putPolicy(t, h.st, &flotillav1.BackupPolicy{Name: "hourly", Selector: "role=db", Database: "shop", Schedule: "0 * * * *", DrillsDisabled: true},
		utc("2026-12-01T00:30:00Z"))
	h.tick("2026-12-01T01:00:00Z")
	first := h.cmds.startedIDs()
	for _, at := range []string{"2026-12-01T02:00:00Z", "2026-12-01T03:00:00Z", "2026-12-01T04:30:00Z"} {
		h.tick(at)
	}
	// Another control plane on the same store does not start one either.
	other := h.scheduler()
	if err := other.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := h.cmds.startedIDs(); !reflect.DeepEqual(got, first) || len(got) != 1 {
		t.Fatalf("while the first run goes on: started %v, want only %v", got, first)
	}
	h.cmds.finish(first[0], utc("2026-12-01T04:40:00Z"), "db-2")
	h.tick("2026-12-01T04:41:00Z")
	r := h.run("hourly")
	if r.LastSucceeded || !strings.Contains(r.LastMessage, "1 of 2 hosts failed") || !strings.Contains(r.LastMessage, "db-2: pg_dump") {
		t.Errorf("run after a host failed = %+v", r)
	}
	h.tick("2026-12-01T04:42:00Z")
	started := h.cmds.startedIDs()
	if len(started) != 2 {
		t.Fatalf("after the run: started %v, want one more", started)
	}
	if r := h.run("hourly"); !r.LastSlot.Equal(utc("2026-12-01T04:00:00Z")) {
		t.Errorf("the run that follows is for slot %v, want the latest missed 04:00", r.LastSlot)
	}
	// Only db-1's backup is catalogued from the first run.
	if got, want := listedIDs(t, h.st, store.BackupQuery{}), []string{first[0] + ".db-1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("catalog = %v, want %v", got, want)
	}
}

// A control plane that stopped after recording a run and before creating
// its command creates it when it is back, under the same ID, once.
func TestRunRecordedButNotCreated(t *testing.T) {
	h := newHarness(t, "db-1")
	putPolicy(t, h.st, nightly("nightly"), utc("2026-11-20T12:00:00Z"))
	p, err := h.st.GetBackupPolicy(context.Background(), "nightly")
	if err != nil {
		t.Fatal(err)
	}
	dp, _ := Decode(p)
	slot := utc("2026-11-21T02:00:00Z")
	id := RunID(dp, store.BackupJobBackup, slot)
	if err := h.st.StartBackupPolicyRun(context.Background(), store.BackupPolicyRun{Policy: "nightly", Job: store.BackupJobBackup, LastSlot: slot, CommandID: id, StartedAt: slot}); err != nil {
		t.Fatal(err)
	}
	h.tick("2026-11-21T02:05:00Z")
	h.tick("2026-11-21T02:05:15Z")
	if got := h.cmds.startedIDs(); !reflect.DeepEqual(got, []string{id}) {
		t.Errorf("started %v, want exactly the recorded %s", got, id)
	}
	// The ID depends on the policy, its creation, the job and the slot.
	if other := RunID(dp, store.BackupJobBackup, slot.Add(24*time.Hour)); other == id || !strings.HasPrefix(other, "cmd-") || len(other) != 16 {
		t.Errorf("RunID for the next slot = %q (first %q)", other, id)
	}
}

// A run that cannot start (no agent matches the selector) ends as failed
// with the reason, and the next slot tries again.
func TestRunThatCannotStart(t *testing.T) {
	h := newHarness(t)
	putPolicy(t, h.st, nightly("nightly"), utc("2026-11-20T12:00:00Z"))
	h.cmds.startErr = fault.Preconditionf(`selector "role=db" matches no registered agent`)
	h.tick("2026-11-21T02:00:00Z")
	r := h.run("nightly")
	if r.CommandID != "" || r.LastSucceeded || !strings.Contains(r.LastMessage, "could not start") || !strings.Contains(r.LastMessage, "matches no registered agent") {
		t.Errorf("run = %+v", r)
	}
	h.cmds.startErr = nil
	h.tick("2026-11-21T03:00:00Z")
	if got := h.cmds.startedIDs(); len(got) != 0 {
		t.Errorf("the failed slot is not retried: started %v", got)
	}
	h.tick("2026-11-22T02:00:00Z")
	if got := h.cmds.startedIDs(); len(got) != 1 {
		t.Errorf("at the next slot: started %v", got)
	}
}

// Across the night clocks go back (New York, 1 November 2026), a policy at
// 01:30 runs once; across the night they go forward, 02:30 runs at 03:30.
func TestDaylightSavingRunsOnce(t *testing.T) {
	h := newHarness(t, "db-1")
	putPolicy(t, h.st, &flotillav1.BackupPolicy{Name: "ny", Selector: "role=db", Database: "shop", Schedule: "30 1 * * *",
		TimeZone: "America/New_York", DrillsDisabled: true}, utc("2026-10-31T12:00:00Z"))
	at := utc("2026-11-01T04:00:00Z")
	for i := 0; i < 12; i++ { // 04:00Z to 07:00Z every 15 minutes
		h.clock.Set(at)
		if err := h.sched.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, id := range h.cmds.startedIDs() {
			if h.cmds.cmds[id].State == flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING {
				h.cmds.finish(id, at)
			}
		}
		at = at.Add(15 * time.Minute)
	}
	if got := h.cmds.startedIDs(); len(got) != 1 {
		t.Errorf("across the repeated hour: %d runs, want 1", len(got))
	}
	if r := h.run("ny"); !r.LastSlot.Equal(utc("2026-11-01T05:30:00Z")) {
		t.Errorf("slot = %v, want 01:30 EDT (05:30Z)", r.LastSlot)
	}
}

// A paused policy starts nothing; a policy changed after a slot does not
// owe the slots before the change.
func TestPausedAndChangedPolicies(t *testing.T) {
	h := newHarness(t, "db-1")
	p := nightly("nightly")
	p.Paused = true
	putPolicy(t, h.st, p, utc("2026-11-20T12:00:00Z"))
	h.tick("2026-11-25T12:00:00Z")
	if got := h.cmds.startedIDs(); len(got) != 0 {
		t.Fatalf("paused: started %v", got)
	}
	p.Paused = false
	def, _ := Normalize(p)
	if _, err := h.st.UpdateBackupPolicy(context.Background(), store.BackupPolicy{Name: "nightly", Spec: mustMarshal(def), UpdatedAt: utc("2026-11-25T12:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	h.tick("2026-11-25T12:00:30Z")
	if got := h.cmds.startedIDs(); len(got) != 0 {
		t.Fatalf("just resumed: started %v, want nothing before the next slot", got)
	}
	h.tick("2026-11-26T02:00:00Z")
	if got := h.cmds.startedIDs(); len(got) != 1 {
		t.Errorf("at the first slot after resuming: started %v", got)
	}
}
