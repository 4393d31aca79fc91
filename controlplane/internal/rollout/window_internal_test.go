package rollout

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/pgtest"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/postgres"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

func utcTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func dw(start string, d time.Duration, zone string) *flotillav1.DeployWindow {
	return &flotillav1.DeployWindow{Start: start, Duration: durationpb.New(d), TimeZone: zone}
}

func mustWindows(t *testing.T, allowed, denied []*flotillav1.DeployWindow) windows {
	t.Helper()
	w, err := parseWindows("service", &flotillav1.Service{AllowedWindows: allowed, DeniedWindows: denied})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// fridayPatch is the deployment plan's patch window: Fridays 08:00-16:00
// in Paris.
func fridayPatch() *flotillav1.DeployWindow { return dw("0 8 * * 5", 8*time.Hour, "Europe/Paris") }

// Inside the Friday window a rollout may run until 16:00 Paris time; after
// it, the next one opens a week later, said in Paris's offset; a denied
// window (the Christmas freeze) beats the allowed one and pushes the next
// opening past itself.
func TestWindowsOpenAndNext(t *testing.T) {
	w := mustWindows(t, []*flotillav1.DeployWindow{fridayPatch()}, nil)
	st := w.status(utcTime(t, "2026-12-11T09:00:00Z")) // Friday 10:00 in Paris
	if !st.GetOpen() || !st.GetClosesAt().AsTime().Equal(utcTime(t, "2026-12-11T15:00:00Z")) ||
		!strings.Contains(st.GetMessage(), "2026-12-11T16:00:00+01:00") {
		t.Fatalf("Friday 10:00 = %v, want open until 16:00 Paris", st)
	}
	st = w.status(utcTime(t, "2026-12-11T15:00:00Z")) // 16:00: the end is not in the window
	if st.GetOpen() || !st.GetOpensAt().AsTime().Equal(utcTime(t, "2026-12-18T07:00:00Z")) ||
		!strings.Contains(st.GetMessage(), "the next window opens at 2026-12-18T08:00:00+01:00") {
		t.Fatalf("Friday 16:00 = %v, want closed until next Friday 08:00 Paris", st)
	}
	freeze := dw("0 0 15 12 *", 21*24*time.Hour, "Europe/Paris") // 15 Dec - 5 Jan
	w = mustWindows(t, []*flotillav1.DeployWindow{fridayPatch()}, []*flotillav1.DeployWindow{freeze})
	st = w.status(utcTime(t, "2026-12-18T09:00:00Z")) // a Friday inside the freeze
	if st.GetOpen() || !strings.Contains(st.GetMessage(), "inside denied window") {
		t.Fatalf("Friday in the freeze = %v, want closed by the denied window", st)
	}
	// The freeze ends on Tuesday 5 January: the next Friday after it.
	if got, want := st.GetOpensAt().AsTime(), utcTime(t, "2027-01-08T07:00:00Z"); !got.Equal(want) {
		t.Fatalf("next opening after the freeze = %v, want %v", got, want)
	}
	// Only denied windows: open outside them, closing at the next one.
	w = mustWindows(t, nil, []*flotillav1.DeployWindow{freeze})
	if st := w.status(utcTime(t, "2026-12-01T00:00:00Z")); !st.GetOpen() || !st.GetClosesAt().AsTime().Equal(utcTime(t, "2026-12-14T23:00:00Z")) {
		t.Fatalf("before the freeze = %v, want open until 15 Dec 00:00 Paris", st)
	}
	if st := w.status(utcTime(t, "2026-12-20T00:00:00Z")); st.GetOpen() || !st.GetOpensAt().AsTime().Equal(utcTime(t, "2027-01-04T23:00:00Z")) {
		t.Fatalf("inside the freeze = %v, want closed until 5 Jan 00:00 Paris", st)
	}
	if st := (windows{}).status(time.Now()); st != nil {
		t.Fatalf("no windows: status %v, want none", st)
	}
}

// A window across a daylight-saving change: its duration is elapsed time.
// Europe/Paris goes back from 03:00 CEST to 02:00 CET on 25 October 2026:
// a window opened at 22:00 CEST for 6h closes at 03:00 CET. In New York,
// 02:30 does not exist on 8 March 2026: the window opens at 03:30 EDT.
func TestWindowsAcrossDaylightSaving(t *testing.T) {
	w := mustWindows(t, []*flotillav1.DeployWindow{dw("0 22 * * 6", 6*time.Hour, "Europe/Paris")}, nil)
	st := w.status(utcTime(t, "2026-10-24T21:00:00Z")) // 23:00 CEST
	if !st.GetOpen() || !strings.Contains(st.GetMessage(), "since 2026-10-24T22:00:00+02:00") {
		t.Fatalf("Saturday 23:00 CEST = %v, want open since 22:00 CEST", st)
	}
	if got, want := st.GetClosesAt().AsTime(), utcTime(t, "2026-10-25T02:00:00Z"); !got.Equal(want) {
		t.Fatalf("closes at %v, want %v (03:00 CET, six hours later)", got, want)
	}
	if !strings.Contains(st.GetMessage(), "close at 2026-10-25T03:00:00+01:00") {
		t.Fatalf("message %q lacks the closing in CET", st.GetMessage())
	}
	if ok, _, _ := w.open(utcTime(t, "2026-10-25T01:30:00Z")); !ok { // 02:30 CET, the repeated hour's second pass
		t.Fatal("02:30 CET, 5h30 into the window, is not open")
	}

	ny := mustWindows(t, []*flotillav1.DeployWindow{dw("30 2 * * *", time.Hour, "America/New_York")}, nil)
	at, by := ny.nextOpen(utcTime(t, "2026-03-08T05:00:00Z")) // 00:00 EST
	if want := utcTime(t, "2026-03-08T07:30:00Z"); !at.Equal(want) || by.at(at) != "2026-03-08T03:30:00-04:00" {
		t.Fatalf("skipped 02:30 opens at %v (%s), want 03:30 EDT", at, by.at(at))
	}
	if ok, _, _ := ny.open(utcTime(t, "2026-03-08T08:29:00Z")); !ok {
		t.Fatal("04:29 EDT, 59 minutes into the window, is not open")
	}
}

// Bad windows are refused naming the field; an unknown zone names time_zone.
func TestWindowsValidation(t *testing.T) {
	base := func() *flotillav1.Service {
		return &flotillav1.Service{Name: "web", Container: "app", Selector: "role=web"}
	}
	tests := []struct {
		name  string
		edit  func(*flotillav1.Service)
		field string
	}{
		{"unknown zone", func(s *flotillav1.Service) {
			s.AllowedWindows = []*flotillav1.DeployWindow{dw("0 8 * * 5", time.Hour, "Mars/Olympus")}
		},
			"service.allowed_windows[0].time_zone"},
		{"Local", func(s *flotillav1.Service) {
			s.DeniedWindows = []*flotillav1.DeployWindow{dw("0 8 * * 5", time.Hour, "Local")}
		},
			"service.denied_windows[0].time_zone"},
		{"bad cron", func(s *flotillav1.Service) {
			s.AllowedWindows = []*flotillav1.DeployWindow{dw("0 8 * *", time.Hour, "")}
		},
			"service.allowed_windows[0].start"},
		{"no start", func(s *flotillav1.Service) { s.AllowedWindows = []*flotillav1.DeployWindow{dw("", time.Hour, "")} },
			"service.allowed_windows[0].start"},
		{"no duration", func(s *flotillav1.Service) {
			s.AllowedWindows = []*flotillav1.DeployWindow{fridayPatch(), {Start: "0 8 * * 5"}}
		}, "service.allowed_windows[1].duration"},
		{"too short", func(s *flotillav1.Service) {
			s.AllowedWindows = []*flotillav1.DeployWindow{dw("0 8 * * 5", time.Second, "")}
		},
			"service.allowed_windows[0].duration"},
		{"too many", func(s *flotillav1.Service) {
			for range maxWindows + 1 {
				s.DeniedWindows = append(s.DeniedWindows, fridayPatch())
			}
		}, "service.denied_windows"},
	}
	for _, tt := range tests {
		s := base()
		tt.edit(s)
		err := ValidateService(s)
		if err == nil || !strings.HasPrefix(strings.TrimPrefix(err.Error(), "invalid argument: "), tt.field+": ") {
			t.Errorf("%s: %v, want an error naming %s", tt.name, err, tt.field)
		}
	}
	s := base()
	s.AllowedWindows = []*flotillav1.DeployWindow{fridayPatch()}
	if err := ValidateService(s); err != nil {
		t.Fatalf("the Friday window is refused: %v", err)
	}
	// An override needs a reason.
	err := ValidateStartReason(&flotillav1.StartRolloutRequest{OverrideWindow: true})
	if err == nil || !strings.Contains(err.Error(), "reason: required with override_window") {
		t.Fatalf("override without a reason: %v", err)
	}
}

// windowFixture is a rollout of two batches (web-1 done, web-2 pending,
// no batch in progress) of a service with the Friday patch window, on a
// store and a clock the test controls.
type windowFixture struct {
	clock *gateClock
	st    store.Store
	e     *Engine
	rec   store.Rollout
}

// openTestStore opens an empty store of the driver, closed when t ends.
func openTestStore(t *testing.T, driver string) store.Store {
	t.Helper()
	ctx := context.Background()
	var st store.Store
	var err error
	if driver == "postgres" {
		p := pgtest.Start(t)
		st, err = postgres.Open(ctx, postgres.Config{DSN: p.AdminConninfo(p.CreateDatabase(t))})
	} else {
		st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "flotilla.db"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newWindowFixture(t *testing.T, driver string, at time.Time) *windowFixture {
	t.Helper()
	ctx := context.Background()
	f := &windowFixture{clock: &gateClock{now: at}, st: openTestStore(t, driver)}
	reg, err := fleet.New(fleet.Config{Store: f.st, Now: f.clock.Now, LostAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"web-1", "web-2"} {
		reg.Add(store.Agent{ID: id, Hostname: id, State: store.AgentDisconnected, RegisteredAt: at.Add(-time.Hour)})
	}
	d, err := commands.NewDispatcher(commands.DispatcherConfig{Store: f.st, Registry: reg, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if f.e, err = New(Config{Store: f.st, Registry: reg, Dispatcher: d, Now: f.clock.Now, Metrics: NewMetrics(prometheus.NewRegistry())}); err != nil {
		t.Fatal(err)
	}
	def := &flotillav1.Rollout{Id: "ro-1", Service: "web", Image: "app:2",
		Batches: []*flotillav1.Batch{{Index: 0, AgentIds: []string{"web-1"}}, {Index: 1, AgentIds: []string{"web-2"}}}}
	defBytes, _ := marshal(def)
	svcBytes, _ := marshal(&flotillav1.Service{Name: "web", Container: "app", Selector: "role=web",
		AllowedWindows: []*flotillav1.DeployWindow{fridayPatch()}})
	if _, err := f.st.PutService(ctx, store.Service{Name: "web", Spec: svcBytes, CreatedAt: at, UpdatedAt: at}); err != nil {
		t.Fatal(err)
	}
	f.rec = store.Rollout{ID: "ro-1", Service: "web", Image: "app:2", Definition: defBytes, ServiceSpec: svcBytes,
		State: int32(flotillav1.RolloutState_ROLLOUT_STATE_RUNNING), Prepared: true, CurrentBatch: 1, BatchFinishedAt: at.Add(-time.Minute),
		StopState: int32(flotillav1.RolloutState_ROLLOUT_STATE_FAILED), CreatedAt: at.Add(-time.Hour)}
	rows := []store.RolloutHost{
		{RolloutID: "ro-1", AgentID: "web-1", Batch: 0, Step: int32(flotillav1.HostStep_HOST_STEP_DONE), Changed: true,
			StartedAt: at.Add(-30 * time.Minute), FinishedAt: at.Add(-time.Minute)},
		{RolloutID: "ro-1", AgentID: "web-2", Batch: 1, Step: int32(flotillav1.HostStep_HOST_STEP_PENDING)},
	}
	if _, err := f.st.CreateRollout(ctx, f.rec, rows, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

// runner makes a runner of the stored rollout at the given time, as a
// control plane starting (or a replica taking it over) would.
func (f *windowFixture) runner(t *testing.T, at time.Time) *runner {
	t.Helper()
	f.clock.set(at)
	ctx := context.Background()
	rec, err := f.st.GetRollout(ctx, "ro-1")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := f.st.ListRolloutHosts(ctx, "ro-1")
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRunner(f.e, rec, rows)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *windowFixture) stored(t *testing.T) (store.Rollout, []store.RolloutHost) {
	t.Helper()
	rec, err := f.st.GetRollout(context.Background(), "ro-1")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := f.st.ListRolloutHosts(context.Background(), "ro-1")
	if err != nil {
		t.Fatal(err)
	}
	return rec, rows
}

// A rollout that reaches the Friday window's end before its second batch
// pauses, stored with the next window's start and an event saying why and
// when; a control plane started meanwhile keeps it paused and wakes at that
// start; once the window opens it resumes by itself and starts the batch.
// On SQLite and on PostgreSQL.
func TestWindowPausesAndResumes(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) { testWindowPausesAndResumes(t, driver) })
	}
}

func testWindowPausesAndResumes(t *testing.T, driver string) {
	ctx := context.Background()
	closed := utcTime(t, "2026-12-11T15:00:30Z") // Friday 16:00:30 in Paris
	next := utcTime(t, "2026-12-18T07:00:00Z")   // next Friday 08:00 in Paris
	f := newWindowFixture(t, driver, closed)
	if _, finished := f.runner(t, closed).step(ctx); finished {
		t.Fatal("the rollout finished")
	}
	rec, rows := f.stored(t)
	if flotillav1.RolloutState(rec.State) != flotillav1.RolloutState_ROLLOUT_STATE_PAUSED || !rec.ResumeAt.Equal(next) ||
		!strings.Contains(rec.Message, "2026-12-18T08:00:00+01:00") || !rec.BatchStartedAt.IsZero() {
		t.Fatalf("after the window's end: %s resume %s %q, want PAUSED until %s", flotillav1.RolloutState(rec.State), rec.ResumeAt, rec.Message, next)
	}
	if flotillav1.HostStep(rows[1].Step) != flotillav1.HostStep_HOST_STEP_PENDING {
		t.Fatalf("web-2 is %s: no batch may start outside the window", flotillav1.HostStep(rows[1].Step))
	}
	evs, err := f.st.ListRolloutEvents(ctx, "ro-1", 0, 0)
	if err != nil || len(evs) == 0 {
		t.Fatalf("events %v, %v", evs, err)
	}
	last, err := eventProto(evs[len(evs)-1])
	if err != nil || last.GetState().GetState() != flotillav1.RolloutState_ROLLOUT_STATE_PAUSED || !last.GetState().GetResumeAt().AsTime().Equal(next) {
		t.Fatalf("last event %v (%v), want the pause with resume_at %s", last, err, next)
	}
	out, err := f.e.GetRollout(ctx, "ro-1")
	if err != nil || !out.GetResumeAt().AsTime().Equal(next) || out.GetWindow().GetOpen() {
		t.Fatalf("GetRollout: resume_at %v window %v (%v)", out.GetResumeAt(), out.GetWindow(), err)
	}
	if got := testutil.ToFloat64(f.e.cfg.Metrics.windows.WithLabelValues("paused")); got != 1 {
		t.Errorf("window paused counter = %v, want 1", got)
	}

	// A restart on Monday: still paused, and it wakes at the opening.
	wake, finished := f.runner(t, utcTime(t, "2026-12-14T10:00:00Z")).step(ctx)
	if rec, _ := f.stored(t); finished || flotillav1.RolloutState(rec.State) != flotillav1.RolloutState_ROLLOUT_STATE_PAUSED || !wake.Equal(next) {
		t.Fatalf("Monday: %s, wake at %v; want PAUSED, waking at %s", flotillav1.RolloutState(rec.State), wake, next)
	}
	// An operator cannot resume it outside the window.
	if err := f.runner(t, utcTime(t, "2026-12-14T10:00:00Z")).handleControl(ctx, controlRequest{op: "resume"}); !errors.Is(err, fault.ErrPrecondition) ||
		!strings.Contains(err.Error(), "resumes by itself") {
		t.Fatalf("ResumeRollout outside the window: %v, want FailedPrecondition", err)
	}

	// Friday 08:00:01: a fresh runner (another replica) resumes it.
	r := f.runner(t, next.Add(time.Second))
	r.step(ctx)
	rec, rows = f.stored(t)
	if flotillav1.RolloutState(rec.State) != flotillav1.RolloutState_ROLLOUT_STATE_RUNNING || !rec.ResumeAt.IsZero() || rec.BatchStartedAt.IsZero() ||
		flotillav1.HostStep(rows[1].Step) != flotillav1.HostStep_HOST_STEP_RESTARTING {
		t.Fatalf("at the opening: %s resume %s %q, web-2 %s; want RUNNING with batch 2 started", flotillav1.RolloutState(rec.State),
			rec.ResumeAt, rec.Message, flotillav1.HostStep(rows[1].Step))
	}
	if got := testutil.ToFloat64(f.e.cfg.Metrics.windows.WithLabelValues("resumed")); got != 1 {
		t.Errorf("window resumed counter = %v, want 1", got)
	}
}

// An operator's pause of a rollout paused by a window keeps it paused past
// the opening: it waits for ResumeRollout.
func TestOperatorPauseOverridesTheWindowsResume(t *testing.T) {
	ctx := context.Background()
	closed := utcTime(t, "2026-12-11T15:00:30Z")
	f := newWindowFixture(t, "sqlite", closed)
	r := f.runner(t, closed)
	r.step(ctx)
	if err := r.handleControl(ctx, controlRequest{op: "pause", reason: "hold for the incident"}); err != nil {
		t.Fatal(err)
	}
	r = f.runner(t, utcTime(t, "2026-12-18T07:00:01Z"))
	r.step(ctx)
	if rec, _ := f.stored(t); flotillav1.RolloutState(rec.State) != flotillav1.RolloutState_ROLLOUT_STATE_PAUSED || !rec.ResumeAt.IsZero() ||
		!strings.Contains(rec.Message, "paused by an operator") {
		t.Fatalf("after the opening: %s %q, want still PAUSED by the operator", flotillav1.RolloutState(rec.State), rec.Message)
	}
	if err := r.handleControl(ctx, controlRequest{op: "resume"}); err != nil {
		t.Fatalf("ResumeRollout inside the window: %v", err)
	}
}

// A rollback, and a remediation's automatic restart, ignore the windows:
// their runner starts a batch outside them.
func TestRollbackIgnoresWindows(t *testing.T) {
	for name, mark := range map[string]func(*flotillav1.Rollout){
		"rollback":    func(d *flotillav1.Rollout) { d.RollbackOf = "ro-0" },
		"remediation": func(d *flotillav1.Rollout) { d.Remediation = &flotillav1.RolloutRemediation{Reason: "threshold"} },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			closed := utcTime(t, "2026-12-11T15:00:30Z")
			f := newWindowFixture(t, "sqlite", closed)
			r := f.runner(t, closed)
			r.def = proto.Clone(r.def).(*flotillav1.Rollout)
			mark(r.def)
			r.ignoreWindows = ignoresWindows(r.def)
			r.step(ctx)
			if rec, rows := f.stored(t); flotillav1.RolloutState(rec.State) != flotillav1.RolloutState_ROLLOUT_STATE_RUNNING ||
				flotillav1.HostStep(rows[1].Step) != flotillav1.HostStep_HOST_STEP_RESTARTING {
				t.Fatalf("%s outside the window: %s, web-2 %s; want it running", name, flotillav1.RolloutState(rec.State), flotillav1.HostStep(rows[1].Step))
			}
		})
	}
}
