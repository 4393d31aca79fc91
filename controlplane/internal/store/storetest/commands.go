package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

func newFleetCommand(id string, createdAt time.Time, state int32) store.FleetCommand {
	return store.FleetCommand{
		ID: id, Kind: "restart", Request: []byte("request-" + id), CreatedBy: "operator:at-admin",
		State: state, CreatedAt: createdAt,
	}
}

// newHostCommand is a queued host command: created, nothing else yet.
func newHostCommand(fleetID, agentID string, createdAt time.Time) store.HostCommand {
	id := fleetID + "." + agentID
	if fleetID == "" {
		id = "rollout-1." + agentID
	}
	return store.HostCommand{
		ID: id, FleetCommandID: fleetID, AgentID: agentID, Kind: "restart", Spec: []byte{0x12, 0x05, 'w', 'e', 'b'},
		State: 1, Message: "queued: waiting for a concurrency slot", CreatedAt: createdAt,
	}
}

func mustCreateFleetCommand(tb testing.TB, s store.Store, fc store.FleetCommand, hosts ...store.HostCommand) {
	tb.Helper()
	if err := s.CreateFleetCommand(context.Background(), fc, hosts); err != nil {
		tb.Fatalf("CreateFleetCommand(%q): %v", fc.ID, err)
	}
}

func mustGetFleetCommand(tb testing.TB, s store.Store, id string) store.FleetCommand {
	tb.Helper()
	fc, err := s.GetFleetCommand(context.Background(), id)
	if err != nil {
		tb.Fatalf("GetFleetCommand(%q): %v", id, err)
	}
	return fc
}

func mustGetHostCommand(tb testing.TB, s store.Store, id string) store.HostCommand {
	tb.Helper()
	h, err := s.GetHostCommand(context.Background(), id)
	if err != nil {
		tb.Fatalf("GetHostCommand(%q): %v", id, err)
	}
	return h
}

func hostIDs(hosts []store.HostCommand) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h.ID
	}
	return out
}

func fleetIDs(fcs []store.FleetCommand) []string {
	out := make([]string, len(fcs))
	for i, fc := range fcs {
		out[i] = fc.ID
	}
	return out
}

func testFleetCommandRoundTrip(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	cest := time.FixedZone("CEST", 2*60*60)

	fc := newFleetCommand("cmd-1", t0.In(cest), 1)
	full := store.HostCommand{
		ID: "cmd-1.web-1", FleetCommandID: "cmd-1", AgentID: "web-1", Kind: "restart", Spec: []byte{0x12, 0x00, 0xff},
		State: 4, Message: "web re-created", Result: []byte{0x12, 0x03, 'w', 'e', 'b'},
		CreatedAt: t0, ReleasedAt: t0.Add(1), Deadline: t0.Add(5 * time.Minute).In(cest), SentAt: time.Now(), // monotonic reading
		StartedAt: t0.Add(3), FinishedAt: t0.Add(4), CancelReason: "deadline passed",
	}
	queued := newHostCommand("cmd-1", "web-0", t0) // nil result, zero times
	emptyResult := newHostCommand("cmd-1", "web-2", t0)
	emptyResult.Result = []byte{} // stays distinct from nil
	emptyResult.Spec = []byte{}
	mustCreateFleetCommand(t, s, fc, full, emptyResult, queued)

	assertEqual(t, mustGetFleetCommand(t, s, "cmd-1"), fc)
	for _, want := range []store.HostCommand{full, queued, emptyResult} {
		assertEqual(t, mustGetHostCommand(t, s, want.ID), want)
	}
	got := mustGetHostCommand(t, s, queued.ID)
	if got.Result != nil || !got.ReleasedAt.IsZero() || !got.Deadline.IsZero() || !got.FinishedAt.IsZero() {
		t.Errorf("queued host command read back with values: %#v", got)
	}
	if r := mustGetHostCommand(t, s, emptyResult.ID).Result; r == nil {
		t.Error("an empty result read back as nil")
	}

	hosts, err := s.ListHostCommands(ctx, "cmd-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"cmd-1.web-0", "cmd-1.web-1", "cmd-1.web-2"}; !slices.Equal(hostIDs(hosts), want) {
		t.Fatalf("ListHostCommands = %v, want %v (by agent ID)", hostIDs(hosts), want)
	}
	assertEqual(t, hosts[1], full)

	// A fleet command without hosts and a finished one.
	finished := newFleetCommand("cmd-2", t0.Add(time.Second), 2)
	finished.FinishedAt = t0.Add(time.Minute)
	finished.CreatedBy = ""
	mustCreateFleetCommand(t, s, finished)
	assertEqual(t, mustGetFleetCommand(t, s, "cmd-2"), finished)
	if hosts, err := s.ListHostCommands(ctx, "cmd-2"); err != nil || len(hosts) != 0 {
		t.Fatalf("ListHostCommands(cmd-2) = %v, %v; want none", hosts, err)
	}
}

func testCommandsNotFound(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.GetFleetCommand(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetFleetCommand = %v, want ErrNotFound", err)
	}
	if _, err := s.GetHostCommand(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetHostCommand = %v, want ErrNotFound", err)
	}
	if err := s.UpdateFleetCommand(ctx, "nope", 2, t0, "", nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateFleetCommand = %v, want ErrNotFound", err)
	}
	if hosts, err := s.ListHostCommands(ctx, "nope"); err != nil || len(hosts) != 0 {
		t.Errorf("ListHostCommands = %v, %v; want none", hosts, err)
	}
}

func testCreateFleetCommandConflictWritesNothing(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	existing := newFleetCommand("cmd-1", t0, 1)
	existingHost := newHostCommand("cmd-1", "web-1", t0)
	mustCreateFleetCommand(t, s, existing, existingHost)

	t.Run("same fleet command ID", func(t *testing.T) {
		again := newFleetCommand("cmd-1", t0.Add(time.Hour), 2)
		err := s.CreateFleetCommand(ctx, again, []store.HostCommand{newHostCommand("cmd-1", "web-9", t0)})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CreateFleetCommand = %v, want ErrConflict", err)
		}
		if _, err := s.GetHostCommand(ctx, "cmd-1.web-9"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the refused command's host was written: %v", err)
		}
	})

	t.Run("a host command ID that exists", func(t *testing.T) {
		clash := existingHost
		clash.FleetCommandID = "cmd-2"
		err := s.CreateFleetCommand(ctx, newFleetCommand("cmd-2", t0, 1), []store.HostCommand{newHostCommand("cmd-2", "web-0", t0), clash})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CreateFleetCommand = %v, want ErrConflict", err)
		}
		if _, err := s.GetFleetCommand(ctx, "cmd-2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the fleet command was written: %v", err)
		}
		if _, err := s.GetHostCommand(ctx, "cmd-2.web-0"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a host command before the clash was written: %v", err)
		}
	})

	t.Run("the same host twice", func(t *testing.T) {
		h := newHostCommand("cmd-3", "web-1", t0)
		err := s.CreateFleetCommand(ctx, newFleetCommand("cmd-3", t0, 1), []store.HostCommand{h, h})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CreateFleetCommand = %v, want ErrConflict", err)
		}
		if _, err := s.GetFleetCommand(ctx, "cmd-3"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the fleet command was written: %v", err)
		}
	})

	assertEqual(t, mustGetFleetCommand(t, s, "cmd-1"), existing)
	assertEqual(t, mustGetHostCommand(t, s, existingHost.ID), existingHost)
	all, err := s.ListFleetCommands(ctx, store.FleetCommandQuery{})
	if err != nil || !slices.Equal(fleetIDs(all), []string{"cmd-1"}) {
		t.Fatalf("fleet commands = %v, %v; want only cmd-1", fleetIDs(all), err)
	}
	active, err := s.ListActiveHostCommands(ctx)
	if err != nil || !slices.Equal(hostIDs(active), []string{existingHost.ID}) {
		t.Fatalf("host commands = %v, %v; want only %s", hostIDs(active), err, existingHost.ID)
	}
}

func testCreateHostCommands(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	// Host commands of other subsystems have no fleet command.
	a, b := newHostCommand("", "web-1", t0), newHostCommand("", "web-2", t0)
	if err := s.CreateHostCommands(ctx, []store.HostCommand{a, b}); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, mustGetHostCommand(t, s, a.ID), a)
	if err := s.CreateHostCommands(ctx, nil); err != nil {
		t.Errorf("CreateHostCommands(nil) = %v", err)
	}

	c := newHostCommand("", "web-3", t0)
	if err := s.CreateHostCommands(ctx, []store.HostCommand{c, a}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateHostCommands with an existing ID = %v, want ErrConflict", err)
	}
	if _, err := s.GetHostCommand(ctx, c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a host command of the refused batch was written: %v", err)
	}
}

func testUpdateHostCommands(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	web1, web2, web3 := newHostCommand("cmd-1", "web-1", t0), newHostCommand("cmd-1", "web-2", t0), newHostCommand("cmd-1", "web-3", t0)
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-1", t0, 1), web1, web2, web3)

	// Release web-1 and finish web-2 in one call.
	released := web1
	released.ReleasedAt, released.Deadline, released.SentAt = t0.Add(time.Second), t0.Add(time.Minute), t0.Add(2*time.Second)
	released.Message = "sent to the agent"
	done := web2
	done.State, done.Message, done.Result = 4, "restarted", []byte{0x01}
	done.ReleasedAt, done.Deadline, done.SentAt = t0.Add(time.Second), t0.Add(time.Minute), t0.Add(2*time.Second)
	done.StartedAt, done.FinishedAt = t0.Add(3*time.Second), t0.Add(4*time.Second)
	// Immutable fields are not written even when they differ.
	changedIdentity := done
	changedIdentity.AgentID, changedIdentity.FleetCommandID, changedIdentity.Kind = "intruder", "cmd-x", "backup"
	changedIdentity.Spec, changedIdentity.CreatedAt = []byte("other"), t0.Add(time.Hour)
	if err := s.UpdateHostCommands(ctx, []store.HostCommand{released, changedIdentity}, nil, nil); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, mustGetHostCommand(t, s, web1.ID), released)
	assertEqual(t, mustGetHostCommand(t, s, web2.ID), done)
	assertEqual(t, mustGetHostCommand(t, s, web3.ID), web3)

	// Writing zero values clears: the fields are the complete new state.
	cleared := done
	cleared.Result, cleared.FinishedAt, cleared.StartedAt = nil, time.Time{}, time.Time{}
	if err := s.UpdateHostCommands(ctx, []store.HostCommand{cleared}, nil, nil); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, mustGetHostCommand(t, s, web2.ID), cleared)

	// One transaction: a bad entry leaves every entry of the call unwritten.
	good := released
	good.State, good.Message = 3, "running"
	bad := web3
	bad.Deadline = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) // not storable
	if err := s.UpdateHostCommands(ctx, []store.HostCommand{good, bad}, nil, nil); err == nil {
		t.Fatal("UpdateHostCommands with an unstorable time succeeded")
	}
	assertEqual(t, mustGetHostCommand(t, s, web1.ID), released)
	assertEqual(t, mustGetHostCommand(t, s, web3.ID), web3)

	if err := s.UpdateHostCommands(ctx, nil, nil, nil); err != nil {
		t.Errorf("UpdateHostCommands(nil) = %v", err)
	}
}

func testListActiveHostCommands(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	finished := newHostCommand("cmd-1", "web-1", t0)
	finished.State, finished.FinishedAt = 4, t0.Add(time.Minute)
	running := newHostCommand("cmd-1", "web-2", t0)
	running.State, running.ReleasedAt, running.StartedAt = 3, t0, t0
	queued := newHostCommand("cmd-1", "web-0", t0)
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-1", t0, 1), finished, running, queued)
	later := newHostCommand("cmd-2", "web-2", t0.Add(-time.Hour)) // web-2's older command sorts first
	mustCreateFleetCommand(t, s, newFleetCommand("cmd-2", t0, 1), later)
	rollout := newHostCommand("", "web-1", t0)
	if err := s.CreateHostCommands(ctx, []store.HostCommand{rollout}); err != nil {
		t.Fatal(err)
	}

	active, err := s.ListActiveHostCommands(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{queued.ID, rollout.ID, later.ID, running.ID} // by agent, then creation
	if !slices.Equal(hostIDs(active), want) {
		t.Fatalf("ListActiveHostCommands = %v, want %v", hostIDs(active), want)
	}
	assertEqual(t, active[3], running)

	// Finishing one removes it.
	running.State, running.FinishedAt = 5, t0.Add(time.Minute)
	if err := s.UpdateHostCommands(ctx, []store.HostCommand{running}, nil, nil); err != nil {
		t.Fatal(err)
	}
	active, err = s.ListActiveHostCommands(ctx)
	if err != nil || slices.Contains(hostIDs(active), running.ID) || len(active) != 3 {
		t.Fatalf("after finishing %s: %v, %v", running.ID, hostIDs(active), err)
	}
}

func testListFleetCommands(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	const (
		running   = 1
		succeeded = 2
		failed    = 3
	)
	// Created in this order; cmd-c and cmd-b share a creation time, and the
	// ID breaks the tie.
	for _, fc := range []store.FleetCommand{
		newFleetCommand("cmd-a", t0, succeeded),
		newFleetCommand("cmd-c", t0.Add(time.Second), running),
		newFleetCommand("cmd-b", t0.Add(time.Second), failed),
		newFleetCommand("cmd-d", t0.Add(2*time.Second), running),
		newFleetCommand("cmd-e", t0.Add(3*time.Second), succeeded),
	} {
		mustCreateFleetCommand(t, s, fc)
	}
	list := func(q store.FleetCommandQuery) []string {
		t.Helper()
		fcs, err := s.ListFleetCommands(ctx, q)
		if err != nil {
			t.Fatalf("ListFleetCommands(%+v): %v", q, err)
		}
		return fleetIDs(fcs)
	}
	newestFirst := []string{"cmd-e", "cmd-d", "cmd-c", "cmd-b", "cmd-a"}
	if got := list(store.FleetCommandQuery{}); !slices.Equal(got, newestFirst) {
		t.Fatalf("all = %v, want %v", got, newestFirst)
	}
	if got := list(store.FleetCommandQuery{Limit: 2}); !slices.Equal(got, newestFirst[:2]) {
		t.Errorf("limit 2 = %v", got)
	}

	// Paging with Before walks the same order without gaps or repeats.
	var paged []string
	before := ""
	for range len(newestFirst) {
		page := list(store.FleetCommandQuery{Before: before, Limit: 2})
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		before = page[len(page)-1]
	}
	if !slices.Equal(paged, newestFirst) {
		t.Errorf("paged = %v, want %v", paged, newestFirst)
	}
	if got := list(store.FleetCommandQuery{Before: "cmd-c"}); !slices.Equal(got, []string{"cmd-b", "cmd-a"}) {
		t.Errorf("before cmd-c = %v", got)
	}
	if got := list(store.FleetCommandQuery{Before: "cmd-unknown"}); len(got) != 0 {
		t.Errorf("before an unknown ID = %v, want none", got)
	}

	if got := list(store.FleetCommandQuery{States: []int32{running}}); !slices.Equal(got, []string{"cmd-d", "cmd-c"}) {
		t.Errorf("running = %v", got)
	}
	if got := list(store.FleetCommandQuery{States: []int32{succeeded, failed}}); !slices.Equal(got, []string{"cmd-e", "cmd-b", "cmd-a"}) {
		t.Errorf("succeeded or failed = %v", got)
	}
	if got := list(store.FleetCommandQuery{States: []int32{succeeded, failed}, Before: "cmd-e", Limit: 1}); !slices.Equal(got, []string{"cmd-b"}) {
		t.Errorf("succeeded or failed before cmd-e, limit 1 = %v", got)
	}
	if got := list(store.FleetCommandQuery{States: []int32{4}}); len(got) != 0 {
		t.Errorf("cancelled = %v, want none", got)
	}
}

func testUpdateFleetCommand(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	fc := newFleetCommand("cmd-1", t0, 1)
	mustCreateFleetCommand(t, s, fc, newHostCommand("cmd-1", "web-1", t0))

	if err := s.UpdateFleetCommand(ctx, "cmd-1", 3, t0.Add(time.Minute), `{"failed":1}`, nil); err != nil {
		t.Fatal(err)
	}
	want := fc
	want.State, want.FinishedAt, want.Summary = 3, t0.Add(time.Minute), `{"failed":1}`
	assertEqual(t, mustGetFleetCommand(t, s, "cmd-1"), want)
	if got, _ := s.ListFleetCommands(ctx, store.FleetCommandQuery{States: []int32{3}}); !slices.Equal(fleetIDs(got), []string{"cmd-1"}) {
		t.Errorf("the updated state is not listed: %v", fleetIDs(got))
	}

	if err := s.UpdateFleetCommand(ctx, "cmd-1", 1, time.Time{}, "", nil); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, mustGetFleetCommand(t, s, "cmd-1"), fc)
	if err := s.UpdateFleetCommand(ctx, "cmd-2", 3, t0, "", nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateFleetCommand(unknown) = %v, want ErrNotFound", err)
	}
}
