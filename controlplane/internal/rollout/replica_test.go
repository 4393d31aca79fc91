package rollout_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/fault"
	controlplane "flotilla.dev/controlplane/internal/server"
	"flotilla.dev/controlplane/internal/server/servertest"
	"flotilla.dev/controlplane/internal/store"
)

// replicaLeaseTTL is the replicas' lease TTL in these tests: the shortest
// the configuration takes, so that a takeover comes within seconds.
const replicaLeaseTTL = 3 * time.Second

// replicaLostAfter is agent_lost_after in these tests: long, since until
// replicas share their fleet view (issue 13, fleet refresh) a replica
// counts the agents attached to another one as silent, and the agents only
// move to the replica driving the rollout once it took it over.
const replicaLostAfter = time.Minute

// replicaStore is one replica's store as a test sees it. Killed, it
// releases no lease any more, as a SIGKILLed process; paused, its rollout
// lease renewals and its rollout writes wait until it resumes, as in a
// process stopped by the scheduler or a long pause: a write under way stays
// in flight, then reaches the database late.
type replicaStore struct {
	store.Store

	mu      sync.Mutex
	dead    bool
	paused  chan struct{} // closed on resume; nil while running
	leases  bool          // while paused, the rollouts' lease renewals wait too
	held    []error       // the outcome of each write that was held
	waiting int           // writes that began to wait
}

func (s *replicaStore) ReleaseLease(ctx context.Context, name, holder string, token int64) error {
	s.mu.Lock()
	dead := s.dead
	s.mu.Unlock()
	if dead {
		return nil
	}
	return s.Store.ReleaseLease(ctx, name, holder, token)
}

func (s *replicaStore) RenewLease(ctx context.Context, name, holder string, token int64, ttl time.Duration) (store.Lease, error) {
	if p := s.pausedCh(); p != nil && s.leasesHeld() && strings.HasPrefix(name, "rollout/") {
		select {
		case <-p:
		case <-ctx.Done():
			return store.Lease{}, ctx.Err()
		}
	}
	return s.Store.RenewLease(ctx, name, holder, token, ttl)
}

func (s *replicaStore) UpdateRollout(ctx context.Context, u store.RolloutUpdate) ([]store.RolloutEvent, error) {
	p := s.pausedCh()
	if p == nil {
		return s.Store.UpdateRollout(ctx, u)
	}
	s.mu.Lock()
	s.waiting++
	s.mu.Unlock()
	<-p // paused mid-write: the process notices nothing, not even its context
	evs, err := s.Store.UpdateRollout(context.WithoutCancel(ctx), u)
	s.mu.Lock()
	s.held = append(s.held, err)
	s.mu.Unlock()
	return evs, err
}

func (s *replicaStore) pausedCh() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused
}

func (s *replicaStore) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead = true
}

// holdWrites makes the rollouts' writes wait until resume; the leases are
// still renewed.
func (s *replicaStore) holdWrites() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused = make(chan struct{})
}

// holdLeases makes the renewals of the rollouts' leases wait too, until
// resume: the process is paused.
func (s *replicaStore) holdLeases() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases = true
}

func (s *replicaStore) leasesHeld() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leases
}

func (s *replicaStore) resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused != nil {
		close(s.paused)
		s.paused = nil
	}
	s.leases = false
}

// holding reports whether a write is held (or was).
func (s *replicaStore) holding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting > 0
}

func (s *replicaStore) heldWrites() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.held...)
}

// newReplicaCluster starts n replicas on one PostgreSQL database and
// registers the fleet; the agents connect to the first replica. It returns
// each replica's store, in the order of the replicas.
func newReplicaCluster(t *testing.T, n int, opts clusterOptions) (*cluster, *servertest.Replicas, []*replicaStore) {
	t.Helper()
	c := &cluster{t: t, opts: opts.withDefaults(), byID: make(map[string]*fakeAgent)}
	c.agentCtx, c.agentCancel = context.WithCancel(context.Background())
	var (
		mu     sync.Mutex
		stores []*replicaStore
	)
	wrap := func(st store.Store) store.Store {
		rs := &replicaStore{Store: st}
		mu.Lock()
		stores = append(stores, rs)
		mu.Unlock()
		return rs
	}
	// Replicas start one after the other: the i-th wrapper is the i-th
	// replica's.
	reps := servertest.StartReplicas(t, n, append(c.options(),
		servertest.WithConfig(func(cfg *config.Config) { cfg.Store.LeaseTTL = config.Duration(replicaLeaseTTL) }),
		servertest.WithServerOptions(controlplane.WithStoreWrapper(wrap)))...)
	c.ca = reps.All[0].Server.CA()
	c.registerFleet(reps.All[0].Store())
	// Registered after the replicas loaded their fleet: tell each one, as
	// Register does on the replica it reaches.
	for id := range c.byID {
		rec, err := reps.All[0].Store().GetAgent(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, cp := range reps.All {
			cp.Server.Registry().Add(rec)
		}
	}
	c.cp = reps.All[0]
	t.Cleanup(c.close)
	return c, reps, stores
}

// moveAgents makes the agents connect to cp from their next stream on.
func (c *cluster) moveAgents(cp *servertest.ControlPlane) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cp = cp
}

// waitDriver waits until a live replica of reps other than not drives the
// rollout, and returns it.
func waitDriver(t *testing.T, reps *servertest.Replicas, id string, not *servertest.ControlPlane) *servertest.ControlPlane {
	t.Helper()
	var found *servertest.ControlPlane
	eventually(t, "another replica to drive "+id, func() bool {
		for _, cp := range reps.Live() {
			if cp != not && slices.Contains(cp.Server.Rollouts().Driving(), id) {
				found = cp
				return true
			}
		}
		return false
	})
	return found
}

func replicaStrategy() *flotillav1.RolloutStrategy {
	return crashScenario{}.strategy()
}

// The replica driving a rollout dies mid-batch (killed: it releases
// nothing). Another replica takes the rollout over once the lease expired
// and finishes it where it stood: every command runs once, every host goes
// through each step once, and the history has no gap.
func TestReplicaDiesMidBatchAnotherFinishesTheRollout(t *testing.T) {
	c, reps, stores := newReplicaCluster(t, 3, clusterOptions{web: 3, lb: true, heartbeat: 5 * time.Millisecond, lostAfter: replicaLostAfter})
	c.putService(nil)
	c.startAgents()
	// web-02's restart takes a while: A dies while it runs.
	c.byID["web-02"].set(func(ag *fakeAgent) { ag.delay = 300 * time.Millisecond })
	id := c.startRollout(newImage, replicaStrategy()).GetId()
	a, ai := driverOf(t, reps, id)
	// C watches from the start: the events of A, then of the replica that
	// takes over, every one once and in order.
	watchedOnC := watchFrom(t, reps.All[(ai+2)%3], id)
	c.waitHost(id, "web-02", stepRestarting)
	stores[ai].kill()
	a.Stop()
	b := waitDriver(t, reps, id, a)
	c.moveAgents(b)
	crashScenario{}.check(t, c, id)
	sameHistory(t, c, id, "C", watchedOnC())
	if got := c.metric("flotilla_work_lease_takeovers_total", "kind", "rollout"); got != 1 {
		t.Errorf("takeovers on the new driver = %v, want 1", got)
	}
}

// A driver paused in the middle of a write loses the rollout's lease; the
// write, reaching the database after another replica took the rollout
// over, is refused as fenced, and the paused replica stops driving it. The
// new driver finishes the rollout: nothing was written or run twice.
func TestPausedDriverIsFencedAndTheNewDriverFinishes(t *testing.T) {
	c, reps, stores := newReplicaCluster(t, 2, clusterOptions{web: 3, lb: true, heartbeat: 5 * time.Millisecond, lostAfter: replicaLostAfter})
	c.putService(nil)
	c.startAgents()
	c.byID["web-02"].set(func(ag *fakeAgent) { ag.delay = 300 * time.Millisecond })
	id := c.startRollout(newImage, replicaStrategy()).GetId()
	a, ai := driverOf(t, reps, id)
	c.waitHost(id, "web-02", stepRestarting)
	// The restart's outcome makes A write the health gate's start: that
	// write hangs, then A's lease renewals too (A is paused mid-write).
	// Renewals go on until the write hangs: the outcome itself, a write
	// of the host command, reaches the store only while A holds the lease
	// (issue 13); arriving after the lease expired, it would be refused
	// and go to the next driver as a report.
	stores[ai].holdWrites()
	eventually(t, "a write of A to hang", stores[ai].holding)
	stores[ai].holdLeases()
	b := waitDriver(t, reps, id, a)
	stores[ai].resume()
	eventually(t, "the paused write to come back", func() bool { return len(stores[ai].heldWrites()) > 0 })
	for _, err := range stores[ai].heldWrites() {
		if !errors.Is(err, store.ErrFenced) {
			t.Fatalf("a write of the paused replica after the takeover = %v, want ErrFenced", err)
		}
	}
	eventually(t, "A to stop driving "+id, func() bool { return len(a.Server.Rollouts().Driving()) == 0 })
	// The agents' streams stay on A, which no longer drives the rollout:
	// A relays B's commands to them and stores their answers as reports
	// for B, instead of applying them as if it still owned the commands.
	_ = b
	crashScenario{}.check(t, c, id)
}

// Pause, resume and abort called on a replica that does not drive the
// rollout reach the driver, which applies them; the caller gets the
// driver's answer, a refusal included. A watcher on that replica sees
// every event, to the end.
func TestControlOnANonDriver(t *testing.T) {
	c, reps, _ := newReplicaCluster(t, 2, clusterOptions{web: 3, lb: true, heartbeat: 5 * time.Millisecond, lostAfter: replicaLostAfter})
	c.putService(nil)
	c.startAgents()
	// web-01's pre-pull waits: the rollout stays PREPARING meanwhile.
	pulled := make(chan struct{})
	c.byID["web-01"].set(func(ag *fakeAgent) { ag.hold = pulled })
	id := c.startRollout(newImage, replicaStrategy()).GetId()
	a, ai := driverOf(t, reps, id)
	b := reps.All[1-ai]
	watchedLive := watchFrom(t, b, id)
	other := b.Server.Rollouts()
	if slices.Contains(other.Driving(), id) {
		t.Fatalf("replica B drives %s, and so does A", id)
	}
	paused, err := other.PauseRollout(operator(), id, "look at the graphs")
	if err != nil {
		t.Fatalf("PauseRollout on B: %v", err)
	}
	if paused.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_PAUSED || !strings.Contains(paused.GetMessage(), "look at the graphs") {
		t.Fatalf("PauseRollout on B returned %s %q, want PAUSED with the reason", paused.GetState(), paused.GetMessage())
	}
	if got := c.get(id).GetState(); got != flotillav1.RolloutState_ROLLOUT_STATE_PAUSED {
		t.Fatalf("rollout on A after B's pause: %s, want PAUSED", got)
	}
	// A refusal comes back as the driver's answer.
	if _, err := other.PauseRollout(operator(), id, ""); err != nil {
		t.Fatalf("a second pause on B (a no-op) = %v", err)
	}
	resumed, err := other.ResumeRollout(operator(), id)
	if err != nil || resumed.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_PREPARING {
		t.Fatalf("ResumeRollout on B = %v, %v; want it preparing again", resumed.GetState(), err)
	}
	if _, err := other.AbortRollout(operator(), id, "wrong image", false); err != nil {
		t.Fatalf("AbortRollout on B: %v", err)
	}
	// The driver refuses a pause of a stopping rollout: B returns its answer.
	if _, err := other.PauseRollout(operator(), id, ""); !errors.Is(err, fault.ErrPrecondition) || !strings.Contains(err.Error(), "is stopping") {
		t.Fatalf("PauseRollout of a stopping rollout on B = %v, want the driver's precondition failure", err)
	}
	c.byID["web-01"].set(func(ag *fakeAgent) { ag.hold = nil })
	close(pulled)
	if got := a.Server.Rollouts().Driving(); !slices.Equal(got, []string{id}) {
		t.Fatalf("A drives %v after B's calls, want %s", got, id)
	}
	// B watches the rollout A drives, to its end.
	ctx, cancel := context.WithTimeout(operator(), waitFor)
	defer cancel()
	var watched []*flotillav1.RolloutEvent
	if err := other.WatchRollout(ctx, id, func(ev *flotillav1.RolloutEvent) error {
		watched = append(watched, ev)
		return nil
	}); err != nil {
		t.Fatalf("WatchRollout on B: %v", err)
	}
	checkSequence(t, watched)
	if last := watched[len(watched)-1].GetState(); last.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_ABORTED ||
		!strings.Contains(last.GetMessage(), "wrong image") {
		t.Fatalf("last event watched on B: %s %q, want ABORTED with the reason", last.GetState(), last.GetMessage())
	}
	if got := c.history(id); len(got) != len(watched) {
		t.Fatalf("B watched %d events, A's history has %d", len(watched), len(got))
	}
	sameHistory(t, c, id, "B from the start", watchedLive())
	if _, err := other.AbortRollout(operator(), id, "too late", false); err == nil || !strings.Contains(err.Error(), "already ended") {
		t.Fatalf("AbortRollout of the finished rollout on B = %v, want a precondition failure", err)
	}
}

// watchFrom watches rollout id on cp from its first event to its end, in
// the background; the function returned waits for the end and returns what
// was watched.
func watchFrom(t *testing.T, cp *servertest.ControlPlane, id string) func() []*flotillav1.RolloutEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(operator(), waitFor)
	done := make(chan error, 1)
	var watched []*flotillav1.RolloutEvent
	go func() {
		done <- cp.Server.Rollouts().WatchRollout(ctx, id, func(ev *flotillav1.RolloutEvent) error {
			watched = append(watched, ev)
			return nil
		})
	}()
	return func() []*flotillav1.RolloutEvent {
		t.Helper()
		defer cancel()
		if err := <-done; err != nil {
			t.Fatalf("WatchRollout of %s: %v", id, err)
		}
		return watched
	}
}

// sameHistory checks that a watcher on another replica saw the rollout's
// stored history: every event, once, in order, whichever replica wrote it
// (issue 13).
func sameHistory(t *testing.T, c *cluster, id, who string, watched []*flotillav1.RolloutEvent) {
	t.Helper()
	checkSequence(t, watched)
	history := c.history(id)
	if len(watched) != len(history) {
		t.Fatalf("the watcher on %s saw %d events, the history has %d", who, len(watched), len(history))
	}
	for i := range history {
		if !proto.Equal(watched[i], history[i]) {
			t.Fatalf("event %d watched on %s = %v, the history has %v", i+1, who, watched[i], history[i])
		}
	}
}

// driverOf waits until one replica drives rollout id and returns it and
// its index: usually the replica that started it, but another replica's
// claim pass may take a new rollout's lease first.
func driverOf(t *testing.T, reps *servertest.Replicas, id string) (*servertest.ControlPlane, int) {
	t.Helper()
	at := -1
	eventually(t, "a replica to drive "+id, func() bool {
		for i, cp := range reps.All {
			if slices.Contains(cp.Server.Rollouts().Driving(), id) {
				at = i
				return true
			}
		}
		return false
	})
	return reps.All[at], at
}
