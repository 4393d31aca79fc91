package rollout

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// gateClock is a settable clock shared by the registry and the engine.
type gateClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *gateClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *gateClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// gateFixture is a rollout of one host, web-1, in its health gate since t0
// (min_healthy_time 60s within 300s), as the replica that drove it stored
// it, and an engine of another replica about to take it over.
type gateFixture struct {
	clock *gateClock
	st    *sqlite.Store
	reg   *fleet.Registry
	e     *Engine
	rec   store.Rollout
}

var gateT0 = time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)

func newGateFixture(t *testing.T, healthySince time.Time) *gateFixture {
	t.Helper()
	ctx := context.Background()
	f := &gateFixture{clock: &gateClock{now: gateT0}}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f.st = st
	if f.reg, err = fleet.New(fleet.Config{Store: st, Now: f.clock.Now, LostAfter: time.Hour}); err != nil {
		t.Fatal(err)
	}
	f.reg.Add(store.Agent{ID: "web-1", Hostname: "web-1", State: store.AgentDisconnected, RegisteredAt: gateT0.Add(-time.Hour)})
	d, err := commands.NewDispatcher(commands.DispatcherConfig{Store: st, Registry: f.reg, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if f.e, err = New(Config{Store: st, Registry: f.reg, Dispatcher: d, Now: f.clock.Now}); err != nil {
		t.Fatal(err)
	}
	def := &flotillav1.Rollout{Id: "ro-1", Service: "web", Image: "app:2", Batches: []*flotillav1.Batch{{AgentIds: []string{"web-1"}}},
		Strategy: &flotillav1.RolloutStrategy{MinHealthyTime: durationpb.New(time.Minute), HealthyDeadline: durationpb.New(5 * time.Minute)}}
	defBytes, _ := marshal(def)
	svcBytes, _ := marshal(&flotillav1.Service{Name: "web", Container: "app", Selector: "role=web"})
	if _, err := st.PutService(ctx, store.Service{Name: "web", Spec: svcBytes, CreatedAt: gateT0, UpdatedAt: gateT0}); err != nil {
		t.Fatal(err)
	}
	f.rec = store.Rollout{ID: "ro-1", Service: "web", Image: "app:2", Definition: defBytes, ServiceSpec: svcBytes,
		State: int32(flotillav1.RolloutState_ROLLOUT_STATE_RUNNING), Prepared: true, BatchStartedAt: gateT0,
		StopState: int32(flotillav1.RolloutState_ROLLOUT_STATE_FAILED), CreatedAt: gateT0.Add(-time.Minute)}
	row := store.RolloutHost{RolloutID: "ro-1", AgentID: "web-1", Step: int32(flotillav1.HostStep_HOST_STEP_HEALTH_CHECK),
		StartedAt: gateT0, StepStartedAt: gateT0, Changed: true, HealthySince: healthySince}
	if _, err := st.CreateRollout(ctx, f.rec, []store.RolloutHost{row}, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

// connect attaches web-1's stream at the given time.
func (f *gateFixture) connect(t *testing.T, at time.Time) *fleet.Session {
	t.Helper()
	f.clock.set(at)
	s, err := f.reg.Attach("web-1", &flotillav1.Hello{AgentId: "web-1", Hostname: "web-1"}, "10.0.0.1:5000")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// takeOver makes the engine's runner of the stored rollout at the given
// time, driving it under a lease of holder b (replica mode).
func (f *gateFixture) takeOver(t *testing.T, at time.Time) *runner {
	t.Helper()
	ctx := context.Background()
	f.clock.set(at)
	rows, err := f.st.ListRolloutHosts(ctx, "ro-1")
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRunner(f.e, f.rec, rows)
	if err != nil {
		t.Fatal(err)
	}
	l, err := f.st.AcquireLease(ctx, "rollout/ro-1", "b", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r.fence = store.FenceOf(l)
	return r
}

func healthy(t *testing.T, f *gateFixture, s *fleet.Session, at time.Time) {
	t.Helper()
	f.clock.set(at)
	if err := f.reg.Heartbeat(s, &flotillav1.Heartbeat{App: &flotillav1.AppHealth{Healthy: true, Status: "healthy"}}); err != nil {
		t.Fatal(err)
	}
}

func (f *gateFixture) stored(t *testing.T) store.RolloutHost {
	t.Helper()
	rows, err := f.st.ListRolloutHosts(context.Background(), "ro-1")
	if err != nil || len(rows) != 1 {
		t.Fatalf("ListRolloutHosts = %+v, %v", rows, err)
	}
	return rows[0]
}

// A replica taking a rollout over keeps counting a health gate's healthy
// streak where the previous driver stored it: 50s of the 60s were done
// when it took over, so the first healthy heartbeat after 60s passes the
// gate, instead of another 60s from the takeover.
func TestTakeoverKeepsTheHealthyStreak(t *testing.T) {
	since := gateT0.Add(10 * time.Second)
	f := newGateFixture(t, since)
	s := f.connect(t, gateT0) // connected before the streak began, and since
	r := f.takeOver(t, gateT0.Add(50*time.Second))
	healthy(t, f, s, gateT0.Add(71*time.Second))
	if _, finished := r.step(context.Background()); !finished {
		t.Fatalf("rollout not finished after a healthy heartbeat 61s into the stored streak: %s", f.stored(t).Message)
	}
	if got := f.stored(t); flotillav1.HostStep(got.Step) != flotillav1.HostStep_HOST_STEP_DONE || !got.HealthySince.IsZero() {
		t.Fatalf("host after the gate = step %s, healthy since %s; want DONE with no streak", flotillav1.HostStep(got.Step), got.HealthySince)
	}
}

// An agent that reconnected since the stored streak began was not watched
// meanwhile: its streak starts again, and the new start is stored for the
// next replica.
func TestTakeoverRestartsTheStreakOfAReconnectedAgent(t *testing.T) {
	f := newGateFixture(t, gateT0.Add(10*time.Second))
	s := f.connect(t, gateT0.Add(45*time.Second))
	r := f.takeOver(t, gateT0.Add(50*time.Second))
	at := gateT0.Add(71 * time.Second)
	healthy(t, f, s, at)
	if _, finished := r.step(context.Background()); finished {
		t.Fatal("rollout finished on a streak the new driver did not see")
	}
	if got := f.stored(t); flotillav1.HostStep(got.Step) != flotillav1.HostStep_HOST_STEP_HEALTH_CHECK || !got.HealthySince.Equal(at) {
		t.Fatalf("host = step %s, healthy since %s; want HEALTH_CHECK with the streak from %s", flotillav1.HostStep(got.Step), got.HealthySince, at)
	}
}

// A driver in replica mode stores the start of a streak as it begins, and
// clears it when an unhealthy heartbeat breaks it.
func TestDriverStoresTheHealthyStreak(t *testing.T) {
	f := newGateFixture(t, time.Time{})
	s := f.connect(t, gateT0)
	r := f.takeOver(t, gateT0.Add(time.Second))
	start := gateT0.Add(2 * time.Second)
	healthy(t, f, s, start)
	r.step(context.Background())
	if got := f.stored(t); !got.HealthySince.Equal(start) {
		t.Fatalf("stored streak start = %s, want %s", got.HealthySince, start)
	}
	f.clock.set(gateT0.Add(3 * time.Second))
	if err := f.reg.Heartbeat(s, &flotillav1.Heartbeat{App: &flotillav1.AppHealth{Healthy: false, Status: "unhealthy"}}); err != nil {
		t.Fatal(err)
	}
	r.step(context.Background())
	if got := f.stored(t); !got.HealthySince.IsZero() {
		t.Fatalf("stored streak start after an unhealthy heartbeat = %s, want none", got.HealthySince)
	}
}

// TestCurrentSinceRestartNeedsTheNewContainer: a reading another replica
// vouches current past the restart's result counts for the health gate
// only if it shows the container the restart made (its ID from the
// result), so that the container a redeploy of the same tag replaced never
// counts; without the ID, the image decides.
func TestCurrentSinceRestartNeedsTheNewContainer(t *testing.T) {
	r := &runner{rec: store.Rollout{Image: "app:2"}, svc: &flotillav1.Service{Container: "app"}}
	after := gateT0
	reading := func(id, image string, current time.Time) fleet.Agent {
		return fleet.Agent{CurrentAt: current, LastHeartbeat: &flotillav1.Heartbeat{Containers: []*flotillav1.ManagedContainer{
			{Name: "sidecar", ContainerId: "new", Image: "app:2", State: "running"},
			{Name: "app", ContainerId: id, Image: image, State: "running"},
		}}}
	}
	later := after.Add(time.Second)
	for _, tc := range []struct {
		name      string
		container string // the restart's new container ("" unknown)
		a         fleet.Agent
		want      bool
	}{
		{"the new container, vouched past the result", "new", reading("new", "app:2", later), true},
		{"the replaced container on the same image", "new", reading("old", "app:2", later), false},
		{"the new container, not vouched past the result", "new", reading("new", "app:2", after), false},
		{"no ID known: the restart's image", "", reading("old", "app:2", later), true},
		{"no ID known: another image", "", reading("old", "app:1", later), false},
	} {
		h := &host{gate: gate{after: after, container: tc.container}}
		if got := r.currentSinceRestart(h, tc.a, after); got != tc.want {
			t.Errorf("%s: currentSinceRestart = %v, want %v", tc.name, got, tc.want)
		}
	}
}
