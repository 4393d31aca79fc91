package journal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"github.com/jonboulle/clockwork"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	accepted  = flotillav1.CommandState_COMMAND_STATE_ACCEPTED
	running   = flotillav1.CommandState_COMMAND_STATE_RUNNING
	succeeded = flotillav1.CommandState_COMMAND_STATE_SUCCEEDED
	failed    = flotillav1.CommandState_COMMAND_STATE_FAILED
	rejected  = flotillav1.CommandState_COMMAND_STATE_REJECTED
	pending   = flotillav1.CommandState_COMMAND_STATE_PENDING
)

var epoch = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

func pull(id string) *flotillav1.Command {
	return &flotillav1.Command{
		Id:       id,
		Deadline: timestamppb.New(epoch.Add(time.Hour)),
		Spec:     &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: "app:2"}}},
	}
}

func event(id string, state flotillav1.CommandState, msg string) *flotillav1.CommandEvent {
	return &flotillav1.CommandEvent{CommandId: id, State: state, Message: msg, At: timestamppb.New(epoch)}
}

type fixture struct {
	path  string
	clock *clockwork.FakeClock
	opts  Options
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clock := clockwork.NewFakeClockAt(epoch)
	return &fixture{
		path:  filepath.Join(t.TempDir(), "state", FileName),
		clock: clock,
		opts:  Options{Clock: clock, Logger: zaptest.NewLogger(t)},
	}
}

// open opens the fixture's journal and closes it when the test ends unless
// the test closed it first.
func (f *fixture) open(t *testing.T) *Journal {
	t.Helper()
	j, err := Open(f.path, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func begin(t *testing.T, j *Journal, id string, state flotillav1.CommandState) (*Entry, bool) {
	t.Helper()
	e, created, err := j.Begin(pull(id), event(id, state, ""))
	if err != nil {
		t.Fatal(err)
	}
	return e, created
}

func TestBeginIsAtMostOnceAcrossReopen(t *testing.T) {
	f := newFixture(t)
	j := f.open(t)
	if _, created := begin(t, j, "c1", accepted); !created {
		t.Fatal("the first Begin did not create the entry")
	}
	if _, created := begin(t, j, "c1", accepted); created {
		t.Fatal("a second Begin of the same ID created it again")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j = f.open(t)
	e, created := begin(t, j, "c1", accepted)
	if created {
		t.Fatal("Begin after reopening created an ID journaled before")
	}
	if e.State != accepted || !proto.Equal(e.Command, pull("c1")) || !e.ReceivedAt.Equal(epoch) {
		t.Errorf("journaled entry %+v does not hold the command as received", e)
	}
}

func TestConcurrentBeginCreatesOnce(t *testing.T) {
	j := newFixture(t).open(t)
	const callers = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
	)
	for range callers {
		wg.Go(func() {
			_, ok, err := j.Begin(pull("same"), event("same", accepted, ""))
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if created != 1 {
		t.Fatalf("%d of %d concurrent Begin calls created the entry, want exactly 1", created, callers)
	}
	if j.Len() != 1 {
		t.Errorf("journal holds %d entries, want 1", j.Len())
	}
}

func TestBeginRefusesInvalidInput(t *testing.T) {
	j := newFixture(t).open(t)
	tests := []struct {
		name  string
		cmd   *flotillav1.Command
		first *flotillav1.CommandEvent
	}{
		{"no ID", pull(""), event("", accepted, "")},
		{"event for another command", pull("a"), event("b", accepted, "")},
		{"running is not a first state", pull("a"), event("a", running, "")},
		{"pending is the control plane's", pull("a"), event("a", pending, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := j.Begin(tt.cmd, tt.first); err == nil {
				t.Error("Begin accepted it")
			}
		})
	}
	if j.Len() != 0 {
		t.Errorf("refused input was journaled (%d entries)", j.Len())
	}
}

func TestBeginJournalsARefusal(t *testing.T) {
	j := newFixture(t).open(t)
	e, created, err := j.Begin(pull("r"), event("r", rejected, "no such container"))
	if err != nil || !created || !e.Terminal() {
		t.Fatalf("Begin(REJECTED) = %v, %v, %v", e, created, err)
	}
	again, created := begin(t, j, "r", accepted)
	if created || again.State != rejected || again.LastEvent.GetMessage() != "no such container" {
		t.Errorf("a duplicate got %v (created %v), want the journaled refusal", again.LastEvent, created)
	}
}

func TestUpdateIsMonotonic(t *testing.T) {
	j := newFixture(t).open(t)
	begin(t, j, "c", accepted)
	steps := []struct {
		ev      *flotillav1.CommandEvent
		wantErr error // nil, ErrFinished, or errAny
	}{
		{event("c", running, "started"), nil},
		{event("c", running, "layer 1/3"), nil},
		{event("c", accepted, "late accept"), errAny},
		{event("c", pending, "not ours"), errAny},
		{event("c", succeeded, "done"), nil},
		{event("c", failed, "too late"), ErrFinished},
		{event("c", running, "stale progress"), ErrFinished},
	}
	for _, s := range steps {
		e, err := j.Update("c", s.ev)
		switch {
		case s.wantErr == nil && err != nil:
			t.Fatalf("Update(%s %q): %v", s.ev.GetState(), s.ev.GetMessage(), err)
		case s.wantErr == errAny && err == nil:
			t.Fatalf("Update(%s %q) moved the state backwards", s.ev.GetState(), s.ev.GetMessage())
		case s.wantErr == ErrFinished && !errors.Is(err, ErrFinished):
			t.Fatalf("Update(%s %q) = %v, want ErrFinished", s.ev.GetState(), s.ev.GetMessage(), err)
		case s.wantErr == ErrFinished && e.LastEvent.GetMessage() != "done":
			t.Fatalf("ErrFinished came with %v, want the journaled final event", e.LastEvent)
		}
	}
	e, err := j.Get("c")
	if err != nil {
		t.Fatal(err)
	}
	if e.State != succeeded || e.LastEvent.GetMessage() != "done" {
		t.Errorf("journal holds %s %q, want the first final event", e.State, e.LastEvent.GetMessage())
	}
	if _, err := j.Update("unknown", event("unknown", running, "")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update of an unknown ID: %v, want ErrNotFound", err)
	}
	if _, err := j.Get("unknown"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown ID: %v, want ErrNotFound", err)
	}
}

// errAny stands for "some error" in the table above.
var errAny = errors.New("any error")

func TestRecoverFailsInFlightEntries(t *testing.T) {
	fx := newFixture(t)
	j := fx.open(t)
	begin(t, j, "accepted", accepted)
	begin(t, j, "running", accepted)
	if _, err := j.Update("running", event("running", running, "layer 2/3")); err != nil {
		t.Fatal(err)
	}
	begin(t, j, "done", accepted)
	if _, err := j.Update("done", event("done", succeeded, "pulled")); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	// The agent "died"; the next process recovers.
	fx.clock.Advance(time.Minute)
	j = fx.open(t)
	got, err := j.Recover(fx.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Recover failed %d entries, want the 2 in flight", len(got))
	}
	for _, id := range []string{"accepted", "running"} {
		e, err := j.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if e.State != failed || e.LastEvent.GetMessage() != RestartMessage ||
			!e.LastEvent.GetAt().AsTime().Equal(fx.clock.Now()) || e.LastEvent.GetCommandId() != id {
			t.Errorf("%s after Recover: %v", id, e.LastEvent)
		}
		if _, created := begin(t, j, id, accepted); created {
			t.Errorf("%s could begin again after Recover", id)
		}
	}
	if e, _ := j.Get("done"); e.State != succeeded {
		t.Errorf("Recover touched a finished entry: %v", e.LastEvent)
	}
	if again, err := j.Recover(fx.clock.Now()); err != nil || len(again) != 0 {
		t.Errorf("a second Recover failed %d entries (%v), want none", len(again), err)
	}
}

func TestPruneByAge(t *testing.T) {
	fx := newFixture(t)
	fx.opts.Retention = 24 * time.Hour
	j := fx.open(t)
	begin(t, j, "old-done", rejected)
	begin(t, j, "old-running", accepted) // in flight: never pruned
	fx.clock.Advance(20 * time.Hour)
	begin(t, j, "recent-done", rejected)

	fx.clock.Advance(5 * time.Hour) // old ones are 25h old, recent 5h
	n, err := j.Prune(fx.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("pruned %d entries, want 1", n)
	}
	assertIDs(t, j, "old-running", "recent-done")
}

func TestPruneCapsEntries(t *testing.T) {
	fx := newFixture(t)
	fx.opts.MaxEntries = 10
	fx.opts.PruneInterval = 24 * time.Hour // only the cap triggers a prune
	j := fx.open(t)
	begin(t, j, "in-flight", accepted)
	for i := range 10 {
		fx.clock.Advance(time.Second)
		begin(t, j, string(rune('a'+i)), rejected)
	}
	// The 11th entry put the journal over its cap of 10: Begin pruned the
	// oldest finished entries down to 9, keeping the one in flight.
	if j.Len() != 9 {
		t.Fatalf("journal holds %d entries after going over the cap, want 9", j.Len())
	}
	assertIDs(t, j, "in-flight", "c", "d", "e", "f", "g", "h", "i", "j")
}

func TestOpenPrunes(t *testing.T) {
	fx := newFixture(t)
	j := fx.open(t)
	begin(t, j, "old", rejected)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	fx.clock.Advance(DefaultRetention + time.Minute)
	j = fx.open(t)
	if j.Len() != 0 {
		t.Errorf("Open kept %d expired entries", j.Len())
	}
}

func assertIDs(t *testing.T, j *Journal, want ...string) {
	t.Helper()
	events, err := j.Entries()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range events {
		got = append(got, ev.GetCommandId())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("journal holds %v, want %v", got, want)
	}
}

func TestEntriesAreTheLastEventsOldestFirst(t *testing.T) {
	fx := newFixture(t)
	j := fx.open(t)
	for _, id := range []string{"z", "m", "a"} { // key order differs from arrival order
		fx.clock.Advance(time.Second)
		begin(t, j, id, accepted)
	}
	if _, err := j.Update("m", event("m", running, "halfway")); err != nil {
		t.Fatal(err)
	}
	events, err := j.Entries()
	if err != nil {
		t.Fatal(err)
	}
	assertIDs(t, j, "z", "m", "a")
	if events[1].GetState() != running || events[1].GetMessage() != "halfway" {
		t.Errorf("entry m reports %v, want its last event", events[1])
	}
}

func TestFileIsPrivate(t *testing.T) {
	fx := newFixture(t)
	j := fx.open(t)
	assertMode(t, fx.path, 0o600)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fx.path, 0o644); err != nil {
		t.Fatal(err)
	}
	fx.open(t)
	assertMode(t, fx.path, 0o600)
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != want {
		t.Errorf("%s has mode %v, want %v", path, info.Mode().Perm(), want)
	}
}

func TestSecondOpenFailsWhileLocked(t *testing.T) {
	fx := newFixture(t)
	fx.open(t)
	fx.opts.LockTimeout = 50 * time.Millisecond
	_, err := Open(fx.path, fx.opts)
	if err == nil || !strings.Contains(err.Error(), "another flotilla-agent") {
		t.Fatalf("second Open: %v, want an error about another agent", err)
	}
}

func TestOpenRefusesAnotherSchemaVersion(t *testing.T) {
	fx := newFixture(t)
	j := fx.open(t)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(fx.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyVersion, []byte("99")) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(fx.path, fx.opts); err == nil || !strings.Contains(err.Error(), "schema version 99") {
		t.Fatalf("Open: %v, want a schema version error", err)
	}
}

func TestCorruptEntryIsSkippedButNeverRerun(t *testing.T) {
	fx := newFixture(t)
	j := fx.open(t)
	begin(t, j, "good", accepted)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(fx.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCommands).Put([]byte("bad"), []byte("{not json")) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	j = fx.open(t)
	recovered, err := j.Recover(fx.clock.Now())
	if err != nil || len(recovered) != 1 || recovered[0].Command.GetId() != "good" {
		t.Fatalf("Recover = %v, %v; want the good entry only", recovered, err)
	}
	assertIDs(t, j, "good")
	if _, created, err := j.Begin(pull("bad"), event("bad", accepted, "")); err == nil || created {
		t.Fatalf("Begin over a corrupt entry: created %v, err %v; want an error", created, err)
	}
}
