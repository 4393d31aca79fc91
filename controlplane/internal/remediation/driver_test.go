package remediation

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// fakeRestarter stands in for the rollout engine: it records the
// restarts and says a service's restart is active until ended.
type fakeRestarter struct {
	mu       sync.Mutex
	started  []string // "<id> <service> <hosts>"
	active   map[string]string
	remedy   map[string]bool
	startErr error
	attempts int // calls of StartRemediation, refused or not
}

func (f *fakeRestarter) StartRemediation(_ context.Context, id, service string, agentIDs []string, reason string, _ []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	if f.startErr != nil {
		return f.startErr
	}
	f.started = append(f.started, fmt.Sprintf("%s %s %s %s", id, service, strings.Join(agentIDs, ","), reason))
	f.active[service], f.remedy[service] = id, true
	return nil
}

func (f *fakeRestarter) ActiveRollout(_ context.Context, service string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active[service], f.remedy[service], nil
}

// end ends the service's active rollout.
func (f *fakeRestarter) end(service string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.active, service)
	delete(f.remedy, service)
}

// operatorRollout makes an operator's rollout active.
func (f *fakeRestarter) operatorRollout(service, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active[service], f.remedy[service] = id, false
}

func (f *fakeRestarter) starts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.started...)
}

// driverEnv is a driver on a real SQLite store and fleet registry, with a
// fake clock and restarter.
type driverEnv struct {
	t        *testing.T
	now      time.Time
	st       *sqlite.Store
	reg      *fleet.Registry
	restarts *fakeRestarter
	sessions map[string]*fleet.Session
	started  map[string]time.Time // each host's container's current run
	events   []store.Remediation
	n        int
}

func newDriverEnv(t *testing.T, policy *flotillav1.RemediationPolicy, hosts ...string) *driverEnv {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e := &driverEnv{t: t, now: t0, st: st, restarts: &fakeRestarter{active: map[string]string{}, remedy: map[string]bool{}},
		sessions: map[string]*fleet.Session{}, started: map[string]time.Time{}}
	if e.reg, err = fleet.New(fleet.Config{Store: st, Logger: zaptest.NewLogger(t), Now: e.clock, LostAfter: time.Hour,
		PersistInterval: time.Hour, FlushInterval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	svc := &flotillav1.Service{Name: "web", Container: "web", Selector: "role=web", Remediation: policy,
		DefaultStrategy: &flotillav1.RolloutStrategy{MaxUnavailable: 1}}
	spec, _ := proto.Marshal(svc)
	if _, err := st.PutService(ctx, store.Service{Name: "web", Spec: spec, CreatedAt: t0, UpdatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	for _, id := range hosts {
		e.reg.Add(store.Agent{ID: id, Hostname: id, Labels: map[string]string{"role": "web"}, State: store.AgentDisconnected, RegisteredAt: t0})
		s, err := e.reg.Attach(id, &flotillav1.Hello{AgentId: id, Hostname: id, Labels: map[string]string{"role": "web"}}, "10.0.0.1:1000")
		if err != nil {
			t.Fatal(err)
		}
		e.sessions[id], e.started[id] = s, t0
	}
	return e
}

func (e *driverEnv) clock() time.Time { return e.now }

func (e *driverEnv) driver() *Driver {
	d, err := New(Config{Store: e.st, Registry: e.reg, Restarter: e.restarts, Logger: zaptest.NewLogger(e.t), Now: e.clock,
		NewID:   func(p string) (string, error) { e.n++; return fmt.Sprintf("%s%d", p, e.n), nil },
		OnEvent: func(_ context.Context, ev store.Remediation) { e.events = append(e.events, ev) }})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// beat sends a heartbeat of each host's container with its working set
// in MiB (limit 100 MiB), then advances the clock by a second.
func (e *driverEnv) beat(mib map[string]uint64, oomKills uint64) {
	e.t.Helper()
	for id, ws := range mib {
		hb := &flotillav1.Heartbeat{Containers: []*flotillav1.ManagedContainer{{Name: "web", Image: "app:v1", State: "running",
			Resources: &flotillav1.ContainerResources{MemoryWorkingSetBytes: ws << 20, MemoryLimitBytes: 100 << 20,
				StartedAt: timestamppb.New(e.started[id]), OomKills: oomKills}}}}
		if err := e.reg.Heartbeat(e.sessions[id], hb); err != nil {
			e.t.Fatal(err)
		}
	}
}

// run feeds the same readings for secs seconds, one tick a second.
func (e *driverEnv) run(d *Driver, fence *store.Fence, secs int, mib map[string]uint64) {
	e.t.Helper()
	for range secs {
		e.beat(mib, 0)
		if err := d.Tick(context.Background(), fence); err != nil {
			e.t.Fatalf("Tick at %s: %v", e.now.Sub(t0), err)
		}
		e.now = e.now.Add(time.Second)
	}
}

func (e *driverEnv) stored(action string) []store.Remediation {
	e.t.Helper()
	list, err := e.st.ListRemediations(context.Background(), store.RemediationQuery{Service: "web", Action: action})
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

func policy(restartsPerHour int32) *flotillav1.RemediationPolicy {
	return &flotillav1.RemediationPolicy{MemoryPercentOfLimit: 80, SustainedFor: durationpb.New(10 * time.Second),
		MaxRestartsPerHostPerHour: restartsPerHour}
}

// TestDriverRestartsThenEscalates: a host above its threshold is restarted
// after sustained_for, through the restarter, with its event stored and
// announced; the leak comes back in the new run and the hourly guard
// escalates once instead of restarting again; an hour later it restarts.
func TestDriverRestartsThenEscalates(t *testing.T) {
	e := newDriverEnv(t, policy(1), "a1", "a2")
	d := e.driver()
	e.run(d, nil, 10, map[string]uint64{"a1": 90, "a2": 40})
	if got := e.restarts.starts(); len(got) != 0 {
		t.Fatalf("restarted before sustained_for: %v", got)
	}
	e.run(d, nil, 2, map[string]uint64{"a1": 90, "a2": 40})
	if got := e.restarts.starts(); len(got) != 1 || got[0] != "ro-1 web a1 threshold" {
		t.Fatalf("restarts %v, want one of a1 by the threshold", got)
	}
	restarts := e.stored(store.RemediationRestart)
	if len(restarts) != 1 || restarts[0].RolloutID != "ro-1" || !strings.Contains(restarts[0].Evidence, "above 80.0 MiB") {
		t.Fatalf("stored restarts %+v", restarts)
	}
	if len(e.events) != 1 || e.events[0].Action != store.RemediationRestart {
		t.Fatalf("announced %+v, want the restart", e.events)
	}
	// The restart ends; a new run leaks again.
	e.restarts.end("web")
	e.started["a1"] = e.now
	e.run(d, nil, 30, map[string]uint64{"a1": 95, "a2": 40})
	if got := e.restarts.starts(); len(got) != 1 {
		t.Fatalf("restarted again within the hour: %v", got)
	}
	esc := e.stored(store.RemediationEscalation)
	if len(esc) != 1 || !strings.HasPrefix(esc[0].Reason, "restarts are not helping: 1 automatic restarts of this host in the last hour") {
		t.Fatalf("escalations %+v, want one saying restarts are not helping", esc)
	}
	if len(e.events) != 2 || e.events[1].Action != store.RemediationEscalation {
		t.Fatalf("announced %+v, want the restart then one escalation", e.events)
	}
	// An hour after the first restart, the guard allows one again.
	e.now = t0.Add(time.Hour + 30*time.Second)
	e.run(d, nil, 2, map[string]uint64{"a1": 95, "a2": 40})
	if got := e.restarts.starts(); len(got) != 2 {
		t.Fatalf("restarts an hour later %v, want a second one", got)
	}
}

// TestDriverGuardSurvivesRestart: a new driver (a restarted control
// plane, or another replica) reads the hour's restarts back from the
// store and escalates instead of restarting again.
func TestDriverGuardSurvivesRestart(t *testing.T) {
	e := newDriverEnv(t, policy(1), "a1")
	e.run(e.driver(), nil, 12, map[string]uint64{"a1": 90})
	if len(e.restarts.starts()) != 1 {
		t.Fatalf("restarts %v", e.restarts.starts())
	}
	e.restarts.end("web")
	e.started["a1"] = e.now
	fresh := e.driver()
	e.run(fresh, nil, 12, map[string]uint64{"a1": 90})
	if got := e.restarts.starts(); len(got) != 1 {
		t.Fatalf("the new driver restarted again: %v", got)
	}
	if len(e.stored(store.RemediationEscalation)) != 1 {
		t.Fatal("the new driver did not escalate")
	}
}

// TestDriverWaitsForRolloutAndMaxUnavailable: no restart during an
// operator's rollout (counted once as blocked), and at most
// max_unavailable (1) hosts in one restart.
func TestDriverWaitsForRolloutAndMaxUnavailable(t *testing.T) {
	e := newDriverEnv(t, policy(2), "a1", "a2")
	d := e.driver()
	e.restarts.operatorRollout("web", "ro-op")
	e.run(d, nil, 15, map[string]uint64{"a1": 90, "a2": 90})
	if got := e.restarts.starts(); len(got) != 0 {
		t.Fatalf("restarted during an operator's rollout: %v", got)
	}
	e.restarts.end("web")
	e.run(d, nil, 1, map[string]uint64{"a1": 90, "a2": 90})
	if got := e.restarts.starts(); len(got) != 1 || got[0] != "ro-1 web a1 threshold" {
		t.Fatalf("restarts %v, want a1 alone (max_unavailable 1)", got)
	}
	e.run(d, nil, 3, map[string]uint64{"a1": 90, "a2": 90})
	if got := e.restarts.starts(); len(got) != 1 {
		t.Fatalf("a2 restarted while a1's restart runs: %v", got)
	}
	// a1's restart freed its memory and ended.
	e.started["a1"] = e.now
	e.restarts.end("web")
	e.run(d, nil, 1, map[string]uint64{"a1": 20, "a2": 90})
	if got := e.restarts.starts(); len(got) != 2 || got[1] != "ro-2 web a2 threshold" {
		t.Fatalf("restarts %v, want a2 next", got)
	}
}

// TestDriverRefusedStartIsForgotten: a restart the engine refuses is not
// counted by the hourly guard, and is tried again with a doubling wait
// (2 s, 4 s, … at most a minute), not at every pass; once the engine
// accepts, the next attempt restarts.
func TestDriverRefusedStartIsForgotten(t *testing.T) {
	e := newDriverEnv(t, policy(1), "a1")
	e.restarts.startErr = errors.New("load-balancer agents offline")
	d := e.driver()
	e.beat(map[string]uint64{"a1": 90}, 0)
	for range 72 {
		e.beat(map[string]uint64{"a1": 90}, 0)
		_ = d.Tick(context.Background(), nil)
		e.now = e.now.Add(time.Second)
	}
	if n := len(e.stored(store.RemediationRestart)); n != 0 {
		t.Fatalf("%d restarts stored for refused starts", n)
	}
	// Sustained from t=0 for 10 s: attempts at 10, 12, 16, 24, 40 and 72
	// would be six; every pass from 10 on would be 62.
	if n := e.restarts.attempts; n < 4 || n > 6 {
		t.Fatalf("%d attempts to start in 72 s of refusals, want 5 or so (backing off)", n)
	}
	e.restarts.startErr = nil
	for i := 0; len(e.restarts.starts()) == 0; i++ {
		if i > 61 {
			t.Fatalf("no restart %d s after the engine accepts again", i)
		}
		e.run(d, nil, 1, map[string]uint64{"a1": 90})
	}
	if got := e.restarts.starts(); len(got) != 1 {
		t.Fatalf("restarts %v once the engine accepts", got)
	}
}

// TestDriverOOMKill: a new run with a new OOM kill is stored as one; the
// driver's own restart is a planned one.
func TestDriverOOMKill(t *testing.T) {
	e := newDriverEnv(t, policy(1), "a1")
	d := e.driver()
	e.run(d, nil, 2, map[string]uint64{"a1": 50})
	e.started["a1"] = e.now
	e.beat(map[string]uint64{"a1": 10}, 1)
	if err := d.Tick(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	oom := e.stored(store.RemediationOOMKill)
	if len(oom) != 1 || !strings.Contains(oom[0].Evidence, "killed for lack of memory") {
		t.Fatalf("OOM kills %+v", oom)
	}
}

// TestDriverFenced: a driver whose lease moved writes nothing and stops.
func TestDriverFenced(t *testing.T) {
	e := newDriverEnv(t, policy(1), "a1")
	ctx := context.Background()
	l, err := e.st.AcquireLease(ctx, "remediation/driver", "holder-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	stale := store.FenceOf(l)
	stale.Token++ // another holder's token
	d := e.driver()
	var tickErr error
	for range 12 {
		e.beat(map[string]uint64{"a1": 90}, 0)
		if tickErr = d.Tick(ctx, stale); tickErr != nil {
			break
		}
		e.now = e.now.Add(time.Second)
	}
	if !errors.Is(tickErr, store.ErrFenced) {
		t.Fatalf("Tick = %v, want ErrFenced", tickErr)
	}
	if got := e.restarts.starts(); len(got) != 0 {
		t.Fatalf("a fenced driver restarted %v", got)
	}
}

// TestReadingOfAnotherReplicasAgent: the reading of an agent whose stream
// another replica holds stands until that replica's flush watermark
// (CurrentAt), so a sustained threshold is timed by it rather than by the
// persist interval of unchanged readings; without a later watermark the
// reading is timed by its receipt.
func TestReadingOfAnotherReplicasAgent(t *testing.T) {
	hb := &flotillav1.Heartbeat{Containers: []*flotillav1.ManagedContainer{{Name: "web", State: "running",
		Resources: &flotillav1.ContainerResources{MemoryWorkingSetBytes: 90 << 20, MemoryLimitBytes: 100 << 20}}}}
	for _, tc := range []struct {
		name           string
		heard, vouched time.Time
		want           time.Time
	}{
		{"vouched current past its receipt", t0, t0.Add(40 * time.Second), t0.Add(40 * time.Second)},
		{"held here (current at its receipt)", t0, t0, t0},
		{"no watermark", t0, time.Time{}, t0},
	} {
		r, ok := readingOf(fleet.Agent{LastHeartbeat: hb, HeartbeatAt: tc.heard, CurrentAt: tc.vouched}, "web")
		if !ok || !r.At.Equal(tc.want) || r.WorkingSet != 90<<20 {
			t.Errorf("%s: reading %+v, %v; want at %s", tc.name, r, ok, tc.want)
		}
	}
}
