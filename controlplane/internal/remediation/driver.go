package remediation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/ids"
	"flotilla.dev/controlplane/internal/selector"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// DefaultInterval is how often the driver reads the fleet's readings.
const DefaultInterval = 2 * time.Second

// Restarter starts automatic restarts: the rollout engine, which drains,
// restarts, health-gates and undrains the hosts like a rollout step.
type Restarter interface {
	// StartRemediation restarts the hosts of a service in place, as the
	// rollout id, and returns once the rollout is stored.
	StartRemediation(ctx context.Context, id, service string, agentIDs []string, reason string, evidence []string) error
	// ActiveRollout returns the service's active rollout ("" when none)
	// and whether it is an automatic restart.
	ActiveRollout(ctx context.Context, service string) (id string, remediation bool, err error)
}

// Store is what the driver keeps and reads: its events and the services.
type Store interface {
	store.RemediationStore
	ListServices(ctx context.Context) ([]store.Service, error)
}

// Config configures a Driver.
type Config struct {
	Store     Store
	Registry  *fleet.Registry
	Restarter Restarter
	// OnEvent is called once an event is stored and, for a restart, once
	// its rollout started: notifications and the audit trail. It must
	// return quickly.
	OnEvent func(ctx context.Context, ev store.Remediation)
	Metrics *Metrics
	Logger  *zap.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Interval is how often the readings are looked at (DefaultInterval
	// when 0).
	Interval time.Duration
	// NewID makes event and rollout IDs; ids.New when nil.
	NewID func(prefix string) (string, error)
	// RolloutIDPrefix starts the rollouts' IDs ("ro-").
	RolloutIDPrefix string
}

// Driver reads each managed container's working set from the fleet's
// heartbeats, feeds the detectors of the services with a remediation
// policy, and starts the restarts their guards allow. One driver runs per
// deployment (under the "remediation" work lease on PostgreSQL); Run is
// not safe for concurrent use.
type Driver struct {
	cfg      Config
	log      *zap.Logger
	services map[string]*serviceState
}

// serviceState is the driver's memory of one service with a policy.
type serviceState struct {
	spec   []byte // the stored service, to see a change of policy
	svc    *flotillav1.Service
	policy Policy
	sel    selector.Selector
	guard  *Guard
	// hosts are the containers' detectors and last readings by agent ID.
	hosts map[string]*hostState
	// inflight is the automatic restart's rollout in progress ("" none),
	// and inflightHosts its hosts.
	inflight      string
	inflightHosts []string
	// startFailures counts the restarts in a row that could not start
	// (refused by the engine, or the store failing), and startRetryAt is
	// when the next one may be tried: a refusal is not retried every pass.
	startFailures int
	startRetryAt  time.Time
}

// hostState follows one host's container.
type hostState struct {
	det  *Detector
	last Reading
	seen bool
	// blocked is the guard rail that stops this host's restart now, so
	// that an episode is counted once.
	blocked string
	// planned is set when the driver restarted the host: its next run
	// is a planned one.
	planned bool
}

// New validates cfg and returns a Driver.
func New(cfg Config) (*Driver, error) {
	if cfg.Store == nil || cfg.Registry == nil || cfg.Restarter == nil {
		return nil, errors.New("remediation: Store, Registry and Restarter are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.NewID == nil {
		cfg.NewID = ids.New
	}
	if cfg.RolloutIDPrefix == "" {
		cfg.RolloutIDPrefix = "ro-"
	}
	if cfg.OnEvent == nil {
		cfg.OnEvent = func(context.Context, store.Remediation) {}
	}
	return &Driver{cfg: cfg, log: cfg.Logger}, nil
}

// Run drives remediation until ctx ends or a write is fenced (the lease
// moved to another replica). fence is nil without a lease (SQLite). Each
// Run starts from the store: the hourly guard's restarts are read back.
func (d *Driver) Run(ctx context.Context, fence *store.Fence) error {
	d.services = make(map[string]*serviceState)
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		if err := d.Tick(ctx, fence); errors.Is(err, store.ErrFenced) {
			d.log.Warn("remediation stopped: another control plane holds its lease now", zap.Error(err))
			return nil
		} else if err != nil && ctx.Err() == nil {
			d.log.Warn("remediation pass failed; retrying", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick looks at every service with a policy once.
func (d *Driver) Tick(ctx context.Context, fence *store.Fence) error {
	if d.services == nil {
		d.services = make(map[string]*serviceState)
	}
	list, err := d.cfg.Store.ListServices(ctx)
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	var errs []error
	seen := make(map[string]bool)
	for _, s := range list {
		st, err := d.serviceState(ctx, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st == nil {
			continue
		}
		seen[s.Name] = true
		if err := d.tickService(ctx, fence, st); err != nil {
			if errors.Is(err, store.ErrFenced) {
				return err
			}
			errs = append(errs, fmt.Errorf("service %s: %w", s.Name, err))
		}
	}
	for name := range d.services {
		if !seen[name] {
			delete(d.services, name)
		}
	}
	return errors.Join(errs...)
}

// serviceState returns the state of a service with a policy (nil
// without one), made anew when the service changed: its guard is
// restored from the restarts stored in the last hour.
func (d *Driver) serviceState(ctx context.Context, s store.Service) (*serviceState, error) {
	if st, ok := d.services[s.Name]; ok && string(st.spec) == string(s.Spec) {
		return st, nil
	}
	delete(d.services, s.Name)
	svc := &flotillav1.Service{}
	if err := proto.Unmarshal(s.Spec, svc); err != nil {
		return nil, fmt.Errorf("service %s is unreadable: %w", s.Name, err)
	}
	if svc.GetRemediation() == nil {
		return nil, nil
	}
	policy, err := FromProto("service.remediation", svc.GetRemediation())
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", s.Name, err)
	}
	sel, err := selector.Parse(svc.GetSelector())
	if err != nil {
		return nil, fmt.Errorf("service %s: selector: %w", s.Name, err)
	}
	now := d.cfg.Now()
	past, err := d.cfg.Store.ListRemediations(ctx, store.RemediationQuery{Service: s.Name, Action: store.RemediationRestart,
		Since: now.Add(-time.Hour)})
	if err != nil {
		return nil, fmt.Errorf("service %s: read its restarts of the last hour: %w", s.Name, err)
	}
	st := &serviceState{spec: s.Spec, svc: svc, policy: policy, sel: sel, hosts: make(map[string]*hostState),
		guard: NewGuard(policy.RestartsPerHour, int(svc.GetDefaultStrategy().GetMaxUnavailable()))}
	for _, r := range past {
		st.guard.Restore(r.AgentID, r.OccurredAt)
	}
	d.services[s.Name] = st
	d.cfg.Metrics.service(s.Name)
	d.log.Info("remediation policy in force", logging.Service(s.Name), zap.Float64("memory_percent_of_limit", policy.PercentOfLimit),
		zap.Uint64("memory_bytes", policy.Bytes), zap.Duration("sustained_for", policy.SustainedFor),
		zap.Duration("growth_window", policy.GrowthWindow), zap.Int("max_restarts_per_host_per_hour", policy.RestartsPerHour),
		zap.Int("restarts_in_last_hour", len(past)))
	return st, nil
}

// candidate is a host whose policy asks for a restart now.
type candidate struct {
	agentID string
	trigger Trigger
}

// tickService follows a service's restart in flight, feeds its hosts'
// readings to their detectors, and restarts the hosts the guard allows.
func (d *Driver) tickService(ctx context.Context, fence *store.Fence, st *serviceState) error {
	name := st.svc.GetName()
	active, isRemediation, err := d.cfg.Restarter.ActiveRollout(ctx, name)
	if err != nil {
		return err
	}
	if st.inflight != "" && active != st.inflight {
		for _, h := range st.inflightHosts {
			st.guard.Finished(h)
		}
		d.log.Info("automatic restart ended", logging.Service(name), logging.RolloutID(st.inflight))
		st.inflight, st.inflightHosts = "", nil
	}
	cands, err := d.observe(ctx, fence, st, active != "")
	if err != nil {
		return err
	}
	rolloutActive := active != "" && !isRemediation
	now := d.cfg.Now()
	var allowed []candidate
	for _, c := range cands {
		dec := st.guard.Check(c.agentID, now, rolloutActive)
		if !dec.Allowed {
			if err := d.blocked(ctx, fence, st, c, dec, now); err != nil {
				return err
			}
			continue
		}
		if active != "" || now.Before(st.startRetryAt) {
			continue // an automatic restart under way, or backing off after a refused one
		}
		st.guard.Started(c.agentID, now)
		allowed = append(allowed, c)
	}
	if len(allowed) == 0 {
		return nil
	}
	if err := d.restart(ctx, fence, st, allowed, now); err != nil {
		if errors.Is(err, store.ErrFenced) {
			return err
		}
		st.startFailures++
		wait := d.startBackoff(st.startFailures)
		st.startRetryAt = now.Add(wait)
		return fmt.Errorf("%w (attempt %d in a row; next in %s)", err, st.startFailures, wait)
	}
	st.startFailures, st.startRetryAt = 0, time.Time{}
	return nil
}

// startBackoffMax caps the wait between attempts to start a restart that
// could not start.
const startBackoffMax = time.Minute

// startBackoff is the wait after the n-th restart in a row that could not
// start: the pass interval, doubled each time, at most startBackoffMax.
func (d *Driver) startBackoff(n int) time.Duration {
	return min(d.cfg.Interval<<min(n-1, 16), startBackoffMax)
}

// observe feeds each host's new reading to its detector and returns the
// hosts that need a restart, by agent ID. A new run of a container is
// classified: an OOM kill is recorded; a planned one (the driver's own
// restart, or a rollout of the service) is not.
func (d *Driver) observe(ctx context.Context, fence *store.Fence, st *serviceState, rolloutActive bool) ([]candidate, error) {
	agents, _, _ := d.cfg.Registry.List(fleet.Query{Selector: st.sel, Limit: 100000})
	var out []candidate
	present := make(map[string]bool, len(agents))
	for _, a := range agents {
		r, ok := readingOf(a, st.svc.GetContainer())
		if !ok {
			continue
		}
		id := a.Record.ID
		present[id] = true
		hs := st.hosts[id]
		if hs == nil {
			hs = &hostState{det: NewDetector(st.policy)}
			st.hosts[id] = hs
		}
		if hs.seen && !r.At.After(hs.last.At) {
			continue // no new heartbeat
		}
		if hs.seen {
			planned := hs.planned || rolloutActive
			if kind := Classify(hs.last, r, planned); kind != NoRestart {
				hs.planned = false
				if err := d.runChanged(ctx, fence, st, id, kind, hs.last, r); err != nil {
					return nil, err
				}
			}
		}
		hs.last, hs.seen = r, true
		if t, ok := hs.det.Observe(r); ok {
			out = append(out, candidate{agentID: id, trigger: t})
		} else {
			hs.blocked = ""
		}
	}
	for id := range st.hosts {
		if !present[id] {
			delete(st.hosts, id)
		}
	}
	slices.SortFunc(out, func(a, b candidate) int { return strings.Compare(a.agentID, b.agentID) })
	return out, nil
}

// readingOf is the reading of an agent's container from its last
// heartbeat, timed by the control plane's receipt of it, or, for an agent
// whose stream another replica holds, as far as that replica vouches for
// it (fleet.Agent.CurrentAt): it writes a heartbeat at once when a
// working set moves by a twentieth of its limit (64 MiB without one), so
// the reading stands within that step until then, and a threshold at a
// multiple of 5 % is seen crossed when it is.
func readingOf(a fleet.Agent, container string) (Reading, bool) {
	if a.LastHeartbeat == nil || a.HeartbeatAt.IsZero() {
		return Reading{}, false
	}
	at := a.HeartbeatAt
	if a.CurrentAt.After(at) {
		at = a.CurrentAt
	}
	for _, mc := range a.LastHeartbeat.GetContainers() {
		res := mc.GetResources()
		if mc.GetName() != container || res == nil {
			continue
		}
		return Reading{At: at, WorkingSet: res.GetMemoryWorkingSetBytes(), Limit: res.GetMemoryLimitBytes(),
			StartedAt: res.GetStartedAt().AsTime(), OOMKills: res.GetOomKills()}, true
	}
	return Reading{}, false
}

// runChanged records a container's new run: an OOM kill is stored as an
// event and counted; a planned restart or a crash is logged.
func (d *Driver) runChanged(ctx context.Context, fence *store.Fence, st *serviceState, agentID string, kind RestartKind, prev, cur Reading) error {
	name := st.svc.GetName()
	switch kind {
	case OOMKill:
		ev := store.Remediation{ID: fmt.Sprintf("rem-oom-%s-%s-%d", name, agentID, cur.StartedAt.UnixNano()), Service: name, AgentID: agentID,
			Action: store.RemediationOOMKill, Reason: "oom_kill", OccurredAt: d.cfg.Now(),
			Evidence: fmt.Sprintf("the run started %s was killed for lack of memory (working set %s of a %s limit at the last reading); a new run started %s",
				prev.StartedAt.UTC().Format(time.RFC3339), mib(prev.WorkingSet), mib(prev.Limit), cur.StartedAt.UTC().Format(time.RFC3339))}
		added, err := d.cfg.Store.AddRemediation(ctx, ev, fence)
		if err != nil {
			return fmt.Errorf("store an OOM kill of %s: %w", agentID, err)
		}
		if added {
			d.cfg.Metrics.oomKilled(name)
			d.log.Warn("container killed for lack of memory", logging.Service(name), logging.AgentID(agentID), zap.String("evidence", ev.Evidence))
			d.cfg.OnEvent(ctx, ev)
		}
	case Planned:
		d.log.Info("container restarted as planned", logging.Service(name), logging.AgentID(agentID))
	case Crash:
		d.log.Info("container restarted (neither planned nor an OOM kill)", logging.Service(name), logging.AgentID(agentID))
	}
	return nil
}

// blocked handles a restart the guard stopped: counted once per episode,
// and escalated (stored, notified, audited) once per hourly window when
// the host had its share of restarts.
func (d *Driver) blocked(ctx context.Context, fence *store.Fence, st *serviceState, c candidate, dec Decision, now time.Time) error {
	name, hs := st.svc.GetName(), st.hosts[c.agentID]
	if dec.Rail == RailInProgress || hs == nil || hs.blocked == dec.Rail {
		return nil
	}
	hs.blocked = dec.Rail
	d.cfg.Metrics.guardBlocked(name, dec.Rail)
	d.log.Info("automatic restart held back by a guard rail", logging.Service(name), logging.AgentID(c.agentID),
		zap.String("guard", dec.Rail), zap.String("reason", dec.Reason), zap.String("evidence", c.trigger.Evidence))
	if !dec.Escalate {
		return nil
	}
	window := st.guard.WindowStart(c.agentID, now)
	ev := store.Remediation{ID: fmt.Sprintf("rem-esc-%s-%s-%d", name, c.agentID, window.UnixNano()), Service: name, AgentID: c.agentID,
		Action: store.RemediationEscalation, Reason: dec.Reason, Evidence: c.trigger.Evidence, OccurredAt: now}
	added, err := d.cfg.Store.AddRemediation(ctx, ev, fence)
	if err != nil {
		return fmt.Errorf("store the escalation of %s: %w", c.agentID, err)
	}
	if added {
		d.cfg.Metrics.escalated(name)
		d.log.Error("restarts are not helping: escalating", logging.Service(name), logging.AgentID(c.agentID),
			zap.String("reason", dec.Reason), zap.String("evidence", c.trigger.Evidence))
		d.cfg.OnEvent(ctx, ev)
	}
	return nil
}

// restart stores a restart event per host (under the fence: a deposed
// driver restarts nothing), then starts their rollout. A refused start
// removes the events again, so the hourly guard counts only restarts
// that happened.
func (d *Driver) restart(ctx context.Context, fence *store.Fence, st *serviceState, cands []candidate, now time.Time) error {
	name := st.svc.GetName()
	rolloutID, err := d.cfg.NewID(d.cfg.RolloutIDPrefix)
	if err != nil {
		return fmt.Errorf("make a rollout ID: %w", err)
	}
	var hosts, evidence []string
	evs := make([]store.Remediation, 0, len(cands))
	for _, c := range cands {
		hosts = append(hosts, c.agentID)
		evidence = append(evidence, c.agentID+": "+c.trigger.Evidence)
		evs = append(evs, store.Remediation{ID: "rem-" + rolloutID + "-" + c.agentID, Service: name, AgentID: c.agentID,
			Action: store.RemediationRestart, Reason: c.trigger.Reason, Evidence: c.trigger.Evidence, RolloutID: rolloutID, OccurredAt: now})
	}
	undo := func(stored []store.Remediation) {
		for _, h := range hosts {
			st.guard.Cancel(h, now)
		}
		for _, ev := range stored {
			if err := d.cfg.Store.DeleteRemediation(context.WithoutCancel(ctx), ev.ID, fence); err != nil {
				d.log.Warn("removing the event of a restart that did not start failed; the hourly guard counts it",
					logging.AgentID(ev.AgentID), zap.Error(err))
			}
		}
	}
	for i, ev := range evs {
		if _, err := d.cfg.Store.AddRemediation(ctx, ev, fence); err != nil {
			undo(evs[:i])
			return fmt.Errorf("store the restart of %s: %w", ev.AgentID, err)
		}
	}
	reason := cands[0].trigger.Reason
	if err := d.cfg.Restarter.StartRemediation(ctx, rolloutID, name, hosts, reason, evidence); err != nil {
		undo(evs)
		d.cfg.Metrics.startFailed(name)
		return fmt.Errorf("start the automatic restart of %v: %w", hosts, err)
	}
	st.inflight, st.inflightHosts = rolloutID, hosts
	for _, c := range cands {
		st.hosts[c.agentID].planned, st.hosts[c.agentID].blocked = true, ""
	}
	d.cfg.Metrics.restarted(name, reason, len(hosts))
	d.log.Warn("restarting containers automatically for their memory", logging.Service(name), logging.RolloutID(rolloutID),
		zap.Strings("hosts", hosts), zap.String("reason", reason), zap.Strings("evidence", evidence))
	for _, ev := range evs {
		d.cfg.OnEvent(ctx, ev)
	}
	return nil
}
