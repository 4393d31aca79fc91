package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/limit"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// pullState is what a runner knows of a host's pre-pull command.
type pullState int

const (
	pullUnknown    pullState = iota // not looked up yet (after a restart)
	pullNotCreated                  // no command yet
	pullCreated                     // command exists; its outcome decides
	pullDone                        // pulled, or the host failed
)

// host is one host of a running rollout: its stored row plus what the
// runner keeps in memory.
type host struct {
	store.RolloutHost
	pullID string
	pull   pullState
	gate   gate
	dirty  bool // changed in the current step
}

// runner drives one active rollout. Only its goroutine changes the rollout
// and its hosts; the dispatcher's listener only updates the command cache
// and wakes it.
type runner struct {
	e   *Engine
	log *zap.Logger

	rec      store.Rollout
	def      *flotillav1.Rollout
	svc      *flotillav1.Service
	strategy *flotillav1.RolloutStrategy
	lbs      []string
	hosts    []*host // plan order
	byID     map[string]*host
	batches  [][]*host

	maxFailures  int
	failures     int    // hosts FAILED in the forward pass
	canaryFailed string // why the canary batch failed, "" while it has not
	pullTodo     []*host
	startedAt    time.Time // when this runner (this process) took the rollout

	wake    chan struct{}
	control chan controlRequest
	done    chan struct{}

	// fence is the rollout's lease this runner writes under (replica
	// mode); nil writes unconditionally. fenced is set once a write was
	// refused: the runner stops at once.
	fence  *store.Fence
	fenced bool

	// status is the analysis in progress (stored in rec.Analysis); nil
	// before the first gate.
	status *flotillav1.AnalysisStatus

	// windows are the service's deploy windows as the rollout started;
	// ignoreWindows is set for a rollback or an override.
	windows       windows
	ignoreWindows bool

	cmu  sync.Mutex
	cmds map[string]store.HostCommand // latest known state of the rollout's commands
}

func newRunner(e *Engine, rec store.Rollout, rows []store.RolloutHost) (*runner, error) {
	def := &flotillav1.Rollout{}
	if err := proto.Unmarshal(rec.Definition, def); err != nil {
		return nil, fmt.Errorf("rollout %s: definition: %w", rec.ID, err)
	}
	svc := &flotillav1.Service{}
	if err := proto.Unmarshal(rec.ServiceSpec, svc); err != nil {
		return nil, fmt.Errorf("rollout %s: service: %w", rec.ID, err)
	}
	r := &runner{
		e: e, rec: rec, def: def, svc: svc, strategy: withDefaults(def.GetStrategy()), lbs: rec.LoadBalancers,
		log:       e.log.With(logging.RolloutID(rec.ID), logging.Service(rec.Service)),
		byID:      make(map[string]*host, len(rows)),
		startedAt: e.cfg.Now(),
		wake:      make(chan struct{}, 1),
		control:   make(chan controlRequest),
		done:      make(chan struct{}),
		cmds:      make(map[string]store.HostCommand),
	}
	st, err := analysisStatus(rec.Analysis)
	if err != nil {
		return nil, fmt.Errorf("rollout %s: analysis: %w", rec.ID, err)
	}
	r.status = st
	if r.windows, err = parseWindows("service", svc); err != nil {
		return nil, fmt.Errorf("rollout %s: deploy windows: %w", rec.ID, err)
	}
	r.ignoreWindows = ignoresWindows(def)
	for _, row := range rows {
		h := &host{RolloutHost: row, pullID: commandID(rec.ID, row.AgentID, "pull", "", false)}
		if flotillav1.HostStep(row.Step) == flotillav1.HostStep_HOST_STEP_HEALTH_CHECK && !row.HealthySince.IsZero() {
			// A healthy streak stored by the replica that drove the gate.
			h.gate = gate{restored: true, since: row.HealthySince, until: row.HealthySince}
		}
		r.byID[row.AgentID] = h
	}
	for i, b := range def.GetBatches() {
		var hs []*host
		for _, id := range b.GetAgentIds() {
			h, ok := r.byID[id]
			if !ok || h.Batch != i {
				return nil, fmt.Errorf("rollout %s: host %s of batch %d has no matching row", rec.ID, id, i)
			}
			hs = append(hs, h)
			r.hosts = append(r.hosts, h)
		}
		r.batches = append(r.batches, hs)
	}
	if len(r.hosts) != len(rows) {
		return nil, fmt.Errorf("rollout %s: %d host rows for %d planned hosts", rec.ID, len(rows), len(r.hosts))
	}
	r.maxFailures = limit.Resolve(r.strategy.GetMaxFailures(), len(r.hosts), 1)
	for _, h := range r.hosts {
		step := flotillav1.HostStep(h.Step)
		if step == flotillav1.HostStep_HOST_STEP_FAILED && !h.RollingBack {
			r.countFailure(h)
		}
		if !rec.Prepared && step == flotillav1.HostStep_HOST_STEP_PENDING {
			r.pullTodo = append(r.pullTodo, h)
		}
		e.cfg.Metrics.hostSteps(flotillav1.HostStep_HOST_STEP_UNSPECIFIED, step, 0)
	}
	e.cfg.Metrics.rolloutState(flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED, flotillav1.RolloutState(rec.State))
	return r, nil
}

func (r *runner) countFailure(h *host) {
	r.failures++
	if b := r.def.GetBatches(); h.Batch < len(b) && b[h.Batch].GetCanary() && r.canaryFailed == "" {
		r.canaryFailed = fmt.Sprintf("canary host %s failed: %s", h.AgentID, h.Message)
	}
}

// commandID is "<rollout>.<agent>.<step>[.<load balancer>][.rb]".
func commandID(rollout, agent, step, lb string, rollback bool) string {
	id := rollout + "." + agent + "." + step
	if lb != "" {
		id += "." + lb
	}
	if rollback {
		id += ".rb"
	}
	return id
}

func (r *runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// observe records a command's latest state, never moving it backwards.
func (r *runner) observe(hc store.HostCommand) {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if old, ok := r.cmds[hc.ID]; ok && newerThan(old, hc) {
		return
	}
	r.cmds[hc.ID] = hc
}

// newerThan reports whether a is further along than b.
func newerThan(a, b store.HostCommand) bool {
	ra, rb := command.Rank(flotillav1.CommandState(a.State)), command.Rank(flotillav1.CommandState(b.State))
	if ra != rb {
		return ra > rb
	}
	return !a.ReleasedAt.IsZero() && b.ReleasedAt.IsZero()
}

// command returns what is known of a host command: the cache, then the
// dispatcher (active commands), then the store (finished ones, after a
// restart). ok is false when the command does not exist.
func (r *runner) command(ctx context.Context, id string) (store.HostCommand, bool, error) {
	r.cmu.Lock()
	hc, ok := r.cmds[id]
	r.cmu.Unlock()
	if ok {
		return hc, true, nil
	}
	if hc, ok := r.e.cfg.Dispatcher.Get(id); ok {
		r.observe(hc)
		return hc, true, nil
	}
	hc, err := r.e.cfg.Store.GetHostCommand(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.HostCommand{}, false, nil
	}
	if err != nil {
		return store.HostCommand{}, false, err
	}
	r.observe(hc)
	// A command the store holds unfinished but the dispatcher does not
	// track was stored in a transition whose sending never happened.
	if hc.FinishedAt.IsZero() {
		r.e.cfg.Dispatcher.Track([]store.HostCommand{hc}, r.fence)
	}
	return hc, true, nil
}

// loop runs the rollout until it finishes or ctx ends.
func (r *runner) loop(ctx context.Context) {
	defer close(r.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var poll <-chan time.Time
	if r.fence != nil {
		// Operators' requests made on other replicas wait in the store.
		ticker := time.NewTicker(r.e.cfg.PollInterval)
		defer ticker.Stop()
		poll = ticker.C
		r.pollControls(ctx)
	}
	for {
		next, finished := r.step(ctx)
		if finished {
			r.e.finished(r)
			return
		}
		if ctx.Err() != nil {
			return
		}
		now := r.e.cfg.Now()
		if !next.IsZero() && !next.After(now) {
			continue
		}
		var tc <-chan time.Time
		if !next.IsZero() {
			timer.Reset(next.Sub(now))
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-tc:
		case req := <-r.control:
			req.reply <- r.handleControl(ctx, req)
		case <-poll:
			r.pollControls(ctx)
		}
		if r.fenced {
			r.e.finished(r)
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// step looks at the rollout once and takes every action it can. It returns
// when to look again (zero: when something wakes it) and whether the
// rollout has finished.
func (r *runner) step(ctx context.Context) (time.Time, bool) {
	start := time.Now()
	ch := newChange(r.e.cfg.Now(), flotillav1.RolloutState(r.rec.State))
	var err error
	if flotillav1.RolloutState(r.rec.State) == flotillav1.RolloutState_ROLLOUT_STATE_ROLLING_BACK {
		err = r.stepRollback(ctx, ch)
	} else {
		err = r.stepForward(ctx, ch)
	}
	if err == nil {
		err = r.commit(ctx, ch)
	}
	r.e.cfg.Metrics.step(time.Since(start))
	if err != nil {
		if errors.Is(err, store.ErrFenced) {
			r.stopFenced(err)
			return time.Time{}, true
		}
		if ctx.Err() != nil {
			return time.Time{}, false
		}
		if errors.Is(err, store.ErrRolloutFinished) {
			r.log.Warn("rollout already finished in the store; this runner stops", zap.Error(err))
			return time.Time{}, true
		}
		r.log.Warn("rollout step failed; reloading from the store and retrying", zap.Error(err), zap.Duration("retry_in", r.e.cfg.RetryInterval))
		r.reload(ctx)
		return ch.now.Add(r.e.cfg.RetryInterval), false
	}
	if Terminal(flotillav1.RolloutState(r.rec.State)) {
		return time.Time{}, true
	}
	if ch.changed() {
		return ch.now, false // look again at once: one change often enables the next
	}
	return ch.wake, false
}

// stopFenced stops the runner after a write was refused as fenced: another
// replica holds the rollout's lease now and drives it; nothing is retried.
func (r *runner) stopFenced(err error) {
	r.fenced = true
	r.log.Warn("the rollout's lease moved to another replica: this one stops driving it", zap.Error(err))
}

// reload replaces the in-memory state with the stored one after a failed
// write, so that memory never runs ahead of the store.
func (r *runner) reload(ctx context.Context) {
	rec, err := r.e.cfg.Store.GetRollout(ctx, r.rec.ID)
	if err != nil {
		r.log.Warn("reloading the rollout failed", zap.Error(err))
		return
	}
	rows, err := r.e.cfg.Store.ListRolloutHosts(ctx, r.rec.ID)
	if err != nil {
		r.log.Warn("reloading the rollout's hosts failed", zap.Error(err))
		return
	}
	fresh, err := newRunner(r.e, rec, rows)
	if err != nil {
		r.log.Error("reloading the rollout failed", zap.Error(err))
		return
	}
	// newRunner counted the hosts and state again; take the old counts out.
	for _, h := range r.hosts {
		r.e.cfg.Metrics.hostSteps(flotillav1.HostStep(h.Step), flotillav1.HostStep_HOST_STEP_UNSPECIFIED, -1)
	}
	r.e.cfg.Metrics.rolloutState(flotillav1.RolloutState(r.rec.State), flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED)
	r.rec, r.hosts, r.byID, r.batches = fresh.rec, fresh.hosts, fresh.byID, fresh.batches
	r.failures, r.canaryFailed, r.pullTodo, r.status = fresh.failures, fresh.canaryFailed, fresh.pullTodo, fresh.status
}

// controlRequest is an operator's call, handled by the runner's goroutine.
type controlRequest struct {
	op       string // "pause", "resume", "abort"
	reason   string
	rollback bool
	reply    chan error
}

// call hands req to the runner and waits for its answer.
func (r *runner) call(ctx context.Context, req controlRequest) error {
	req.reply = make(chan error, 1)
	select {
	case r.control <- req:
	case <-r.done:
		return errRunnerGone
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errRunnerGone = errors.New("rollout runner stopped")

func (r *runner) handleControl(ctx context.Context, req controlRequest) error {
	ch := newChange(r.e.cfg.Now(), flotillav1.RolloutState(r.rec.State))
	state := flotillav1.RolloutState(r.rec.State)
	switch req.op {
	case "pause":
		switch {
		case state == flotillav1.RolloutState_ROLLOUT_STATE_PAUSED && r.rec.ResumeAt.IsZero():
			return nil
		case state == flotillav1.RolloutState_ROLLOUT_STATE_PAUSED:
			// Paused by a deploy window: the operator's pause keeps it
			// paused past the window's opening, until ResumeRollout.
			r.rec.ResumeAt = time.Time{}
		case r.rec.Stop != "":
			return fault.Preconditionf("rollout %s is stopping (%s); it cannot be paused", r.rec.ID, r.rec.Stop)
		case state != flotillav1.RolloutState_ROLLOUT_STATE_PREPARING && state != flotillav1.RolloutState_ROLLOUT_STATE_RUNNING &&
			state != flotillav1.RolloutState_ROLLOUT_STATE_BAKING:
			return fault.Preconditionf("rollout %s is %s; only a preparing, running or baking rollout can be paused", r.rec.ID, state)
		}
		msg := "paused by an operator; hosts in progress finish, no new host starts"
		if req.reason != "" {
			msg += ": " + req.reason
		}
		r.setState(ch, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED, msg)
	case "resume":
		switch state {
		case flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, flotillav1.RolloutState_ROLLOUT_STATE_BAKING:
			return nil
		case flotillav1.RolloutState_ROLLOUT_STATE_PAUSED:
		default:
			return fault.Preconditionf("rollout %s is %s; only a paused rollout can be resumed", r.rec.ID, state)
		}
		if !r.rec.ResumeAt.IsZero() {
			if st := r.windows.status(ch.now); st != nil && !st.GetOpen() {
				return fault.Preconditionf("rollout %s is paused by its service's deploy windows (%s); it resumes by itself at %s, or AbortRollout stops it",
					r.rec.ID, st.GetMessage(), r.rec.ResumeAt.UTC().Format(time.RFC3339))
			}
		}
		r.setState(ch, r.resumeState(), "resumed by an operator")
	case "abort":
		switch state {
		case flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED,
			flotillav1.RolloutState_ROLLOUT_STATE_BAKING, flotillav1.RolloutState_ROLLOUT_STATE_SWITCHED:
		default:
			return fault.Preconditionf("rollout %s is %s; it cannot be aborted", r.rec.ID, state)
		}
		reason := "aborted by an operator"
		if req.reason != "" {
			reason += ": " + req.reason
		}
		if r.rec.Stop != "" {
			reason += " (it was already stopping: " + r.rec.Stop + ")"
		}
		r.rec.Stop, r.rec.StopState = reason, int32(flotillav1.RolloutState_ROLLOUT_STATE_ABORTED)
		// A blue-green rollout that stops always switches back: its
		// previous containers still run.
		r.rec.StopRollback = r.rec.StopRollback || req.rollback || r.blueGreen()
		msg := reason + "; hosts in progress finish, no new host starts"
		if r.rec.StopRollback {
			msg += ", then the changed hosts are rolled back"
		}
		r.setState(ch, state, msg)
	default:
		return fmt.Errorf("unknown control %q", req.op)
	}
	if err := r.commit(ctx, ch); err != nil {
		if errors.Is(err, store.ErrFenced) {
			r.stopFenced(err)
			return fault.Unavailablef("rollout %s: this control plane lost the rollout to another replica; retry", r.rec.ID)
		}
		r.log.Warn("storing an operator's change failed", zap.String("op", req.op), zap.Error(err))
		r.reload(ctx)
		return fault.Unavailablef("the change could not be stored; retry")
	}
	r.signal()
	return nil
}
