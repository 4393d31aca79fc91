package rollout

import (
	"context"
	"time"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// change collects what one step did, so that it is written in one
// transaction before any command goes out.
type change struct {
	now       time.Time
	fromState flotillav1.RolloutState
	rollout   bool
	// stateEvent: the step recorded a state change (or a new message).
	stateEvent bool
	hosts      []*host
	events     []store.RolloutEvent
	cmds       []store.HostCommand
	// release lists stored commands not yet sent (a restart happened
	// between the transition and its sending, or the sending failed).
	release []string
	steps   []stepChange
	batches []batchChange
	// wake is the earliest time the runner must look again without being
	// woken; zero when only an event can move the rollout.
	wake time.Time
	// analysisFailed is set when the step's analysis failed the rollout.
	analysisFailed *AnalysisFailure
}

type stepChange struct {
	h        *host
	from, to flotillav1.HostStep
	inStep   time.Duration
}

type batchChange struct {
	index    int
	started  bool
	msg      string
	duration time.Duration
}

func newChange(now time.Time, state flotillav1.RolloutState) *change {
	return &change{now: now, fromState: state}
}

// changed reports whether the step wrote anything.
func (c *change) changed() bool {
	return c.rollout || len(c.hosts) > 0 || len(c.events) > 0 || len(c.cmds) > 0
}

// wakeAt asks to look again at t at the latest.
func (c *change) wakeAt(t time.Time) {
	if c.wake.IsZero() || t.Before(c.wake) {
		c.wake = t
	}
}

func (c *change) touch(h *host) {
	if !h.dirty {
		h.dirty = true
		c.hosts = append(c.hosts, h)
	}
}

// setStep moves a host to a new step and records the event.
func (r *runner) setStep(c *change, h *host, step flotillav1.HostStep, msg string) {
	from := flotillav1.HostStep(h.Step)
	inStep := time.Duration(-1)
	if !h.StepStartedAt.IsZero() {
		inStep = c.now.Sub(h.StepStartedAt)
	}
	h.Step, h.Message, h.StepStartedAt, h.HealthySince = int32(step), msg, c.now, time.Time{}
	if from == flotillav1.HostStep_HOST_STEP_PENDING && activeStep(step) {
		h.StartedAt = c.now
	}
	if terminalStep(step) {
		h.FinishedAt = c.now
	}
	if step == flotillav1.HostStep_HOST_STEP_FAILED && !h.RollingBack {
		r.countFailure(h)
	}
	c.touch(h)
	c.events = append(c.events, hostEvent(c.now, &h.RolloutHost))
	c.steps = append(c.steps, stepChange{h: h, from: from, to: step, inStep: inStep})
}

// setState moves the rollout to a new state (or records a new message for
// the same state) with its event.
func (r *runner) setState(c *change, state flotillav1.RolloutState, msg string) {
	r.rec.State, r.rec.Message = int32(state), msg
	if Terminal(state) {
		r.rec.FinishedAt = c.now
	}
	if state != flotillav1.RolloutState_ROLLOUT_STATE_PAUSED {
		// Only a deploy window's pause resumes by itself.
		r.rec.ResumeAt = time.Time{}
	}
	c.rollout, c.stateEvent = true, true
	c.events = append(c.events, pauseEvent(c.now, state, msg, r.rec.ResumeAt))
}

func (r *runner) batchStarted(c *change, index int, msg string) {
	r.rec.BatchStartedAt = c.now
	c.rollout = true
	c.events = append(c.events, batchEvent(c.now, index, true, msg))
	c.batches = append(c.batches, batchChange{index: index, started: true, msg: msg})
}

func (r *runner) batchFinished(c *change, index int, msg string) {
	d := c.now.Sub(r.rec.BatchStartedAt)
	r.rec.BatchStartedAt, r.rec.BatchFinishedAt = time.Time{}, c.now
	c.rollout = true
	c.events = append(c.events, batchEvent(c.now, index, false, msg))
	c.batches = append(c.batches, batchChange{index: index, msg: msg, duration: d})
}

// newCommand adds a host command to the step's transition.
func (r *runner) newCommand(c *change, id, agent string, spec *flotillav1.CommandSpec) {
	b, err := marshal(spec)
	if err != nil {
		panic(err) // a spec built here from plain fields always encodes
	}
	c.cmds = append(c.cmds, store.HostCommand{
		ID: id, AgentID: agent, Kind: command.Kind(spec), Spec: b,
		State: int32(flotillav1.CommandState_COMMAND_STATE_PENDING), Message: "queued by rollout " + r.rec.ID, CreatedAt: c.now,
	})
}

// commit writes the step's transition, then sends its commands. Nothing is
// sent for a transition that was not stored.
func (r *runner) commit(ctx context.Context, c *change) error {
	if c.changed() {
		u := store.RolloutUpdate{RolloutID: r.rec.ID, Events: c.events, Commands: c.cmds, Fence: r.fence}
		if c.rollout {
			rec := r.rec
			u.Rollout = &rec
		}
		for _, h := range c.hosts {
			u.Hosts = append(u.Hosts, h.RolloutHost)
		}
		if _, err := r.e.cfg.Store.UpdateRollout(ctx, u); err != nil {
			return err
		}
		for _, h := range c.hosts {
			h.dirty = false
		}
		r.afterCommit(c)
		if c.stateEvent && flotillav1.RolloutState(r.rec.State) != c.fromState {
			r.stateChanged(ctx, c.fromState, c.now)
		}
		r.analysisFailed(ctx, c.analysisFailed)
		if hook := r.e.commitHook; hook != nil {
			hook(ctx, r.rec.ID)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	r.send(ctx, c)
	return nil
}

// afterCommit logs, counts and tells the watchers what the stored step did.
func (r *runner) afterCommit(c *change) {
	m := r.e.cfg.Metrics
	for _, b := range c.batches {
		if b.started {
			r.log.Info("batch started", zap.Int("batch", b.index), zap.String("message", b.msg))
		} else {
			r.log.Info("batch finished", zap.Int("batch", b.index), zap.Duration("duration", b.duration), zap.String("message", b.msg))
			m.batchDone(b.duration)
		}
	}
	for _, s := range c.steps {
		m.hostSteps(s.from, s.to, s.inStep)
		level := r.log.Info
		if s.to == flotillav1.HostStep_HOST_STEP_FAILED || s.to == flotillav1.HostStep_HOST_STEP_ROLLBACK_FAILED {
			level = r.log.Warn
		}
		level("host step", logging.AgentID(s.h.AgentID), zap.String("step", stepName(s.to)),
			zap.String("from", stepName(s.from)), zap.Bool("rolling_back", s.h.RollingBack), zap.String("message", s.h.Message))
	}
	to := flotillav1.RolloutState(r.rec.State)
	if c.rollout {
		m.rolloutState(c.fromState, to)
		if c.stateEvent {
			r.log.Info("rollout state", zap.String("state", stateName(to)), zap.String("from", stateName(c.fromState)),
				zap.String("message", r.rec.Message))
		}
	}
	if Terminal(to) {
		for _, h := range r.hosts {
			m.hostSteps(flotillav1.HostStep(h.Step), flotillav1.HostStep_HOST_STEP_UNSPECIFIED, -1)
		}
	}
	if len(c.events) > 0 {
		r.e.notifyWatchers(r.rec.ID)
	}
}

// send tracks the step's new commands and releases them (and any stored
// command not yet released) to their agents.
func (r *runner) send(ctx context.Context, c *change) {
	if len(c.cmds) > 0 {
		for _, hc := range c.cmds {
			r.observe(hc)
		}
		r.e.cfg.Dispatcher.Track(c.cmds, r.fence)
	}
	byKind := make(map[string][]string)
	for _, hc := range c.cmds {
		byKind[hc.Kind] = append(byKind[hc.Kind], hc.ID)
	}
	for _, id := range c.release {
		if hc, ok := r.e.cfg.Dispatcher.Get(id); ok && hc.ReleasedAt.IsZero() {
			byKind[hc.Kind] = append(byKind[hc.Kind], id)
		}
	}
	for kind, ids := range byKind {
		if err := r.e.cfg.Dispatcher.Release(ctx, ids, r.timeout(kind)); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("sending commands failed; retrying", zap.String("kind", kind), zap.Int("commands", len(ids)), zap.Error(err))
				c.wakeAt(c.now.Add(r.e.cfg.RetryInterval))
			}
		}
	}
}

// timeout is a command's deadline from its release.
func (r *runner) timeout(kind string) time.Duration {
	d := commands.DefaultTimeout(kind)
	if kind == command.KindPull && r.strategy.GetOfflineHosts() == flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT {
		d += r.strategy.GetOfflineWait().AsDuration()
	}
	if kind == command.KindStartCandidate {
		// The agent runs the candidate's health gate within the command.
		d += r.strategy.GetHealthyDeadline().AsDuration()
	}
	return d
}
