package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/selector"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// startParams is a validated start (StartRollout or RollbackService).
type startParams struct {
	service    string
	image      string
	selector   string // override; the service's when empty
	strategy   *flotillav1.RolloutStrategy
	reason     string
	dryRun     bool
	rollbackOf string
	createdBy  string
	// agentIDs restricts an automatic restart to these hosts of the
	// service's selector; remediation marks one (StartRemediation).
	agentIDs    []string
	remediation *flotillav1.RolloutRemediation
	// id is the rollout's ID when the caller chose it (ids.New otherwise).
	id string
	// overrideWindow starts outside the service's deploy windows (reason
	// says why) and never pauses at one.
	overrideWindow bool
}

// start plans a rollout and, unless it is a dry run, stores it and hands it
// to a runner. A dry run returns the very plan a start would follow now.
func (e *Engine) start(ctx context.Context, p startParams) (*flotillav1.Rollout, error) {
	pl, err := e.planStart(ctx, p)
	if err != nil {
		return nil, err
	}
	createdBy := p.createdBy
	now := e.cfg.Now()
	if p.remediation != nil {
		p.image = remediationImage(pl)
	}
	window, err := e.checkWindow(p, pl.svc, now)
	if err != nil {
		return nil, err
	}
	def := &flotillav1.Rollout{
		Service: p.service, Image: p.image, Strategy: pl.strategy, Selector: pl.selector, Reason: p.reason, CreatedBy: createdBy,
		Batches: pl.plan.Batches, Excluded: pl.plan.Excluded, CreatedAt: ts(now), RollbackOf: p.rollbackOf, Remediation: p.remediation,
		OverrideWindow: p.overrideWindow && p.rollbackOf == "",
	}
	rows := pendingHosts(pl.plan, pl.strategy)
	if p.dryRun {
		out := dryRunRollout(def, rows)
		out.Window = window
		return out, nil
	}
	rec, err := e.storeRollout(ctx, p, pl, def, rows, now)
	if err != nil {
		return nil, err
	}
	r, err := newRunner(e, rec, rows)
	if err != nil {
		return nil, fmt.Errorf("rollout %s: %v", rec.ID, err)
	}
	for _, h := range r.hosts {
		h.pull = pullNotCreated // a new rollout has no command yet
	}
	e.cfg.Metrics.rolloutStarted()
	r.stateChanged(ctx, flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED, now)
	e.log.Info("rollout started", logging.RolloutID(rec.ID), logging.Service(p.service), zap.String("image", p.image),
		logging.Principal(createdBy), zap.Int("hosts", len(rows)), zap.Int("batches", len(pl.plan.Batches)),
		zap.Int("excluded", len(pl.plan.Excluded)), zap.String("rollback_of", p.rollbackOf), zap.String("reason", p.reason),
		zap.Bool("override_window", def.GetOverrideWindow()))
	if e.claimer != nil {
		e.claimNew(ctx, r)
	} else {
		e.launch(r)
	}
	out, err := rolloutProto(rec, rows)
	if err != nil {
		return nil, fmt.Errorf("rollout %s is unreadable", rec.ID)
	}
	out.Window = window
	return out, nil
}

// startPlan is what a start resolved: the service, its strategy and
// selector with the start's overrides, its load-balancer agents, and the
// plan over the hosts the selector matches.
type startPlan struct {
	svc      *flotillav1.Service
	strategy *flotillav1.RolloutStrategy
	selector string
	lbIDs    []string
	plan     Plan
}

// planStart reads the service, resolves the strategy and the selector,
// refuses a start while the service has an active rollout (a dry run
// excepted), and plans the batches over the matching agents.
func (e *Engine) planStart(ctx context.Context, p startParams) (startPlan, error) {
	stored, err := e.getService(ctx, p.service, "service")
	if err != nil {
		return startPlan{}, err
	}
	pl := startPlan{svc: &flotillav1.Service{}, strategy: p.strategy, selector: p.selector}
	if err := proto.Unmarshal(stored.Spec, pl.svc); err != nil {
		return startPlan{}, fmt.Errorf("service %s is unreadable", p.service)
	}
	if pl.strategy == nil {
		pl.strategy = pl.svc.GetDefaultStrategy()
	}
	if p.remediation != nil {
		pl.strategy = remediationStrategy(pl.svc.GetDefaultStrategy(), len(p.agentIDs))
	}
	pl.strategy = withDefaults(pl.strategy)
	if a := pl.strategy.GetAnalysis(); a != nil && a.GetPrometheusUrl() == "" {
		if e.cfg.PrometheusURL == "" {
			return startPlan{}, invalid("strategy.analysis.prometheus_url", "required: the control plane has no analysis.prometheus_url")
		}
		a.PrometheusUrl = e.cfg.PrometheusURL
	}
	if pl.strategy.GetBlueGreen() != nil || pl.strategy.GetSurge() {
		if pl.svc.GetLoadBalancer().GetAlternatePort() == 0 {
			field := "strategy.surge"
			if pl.strategy.GetBlueGreen() != nil {
				field = "strategy.blue_green"
			}
			return startPlan{}, fault.Preconditionf("%s needs the service's load_balancer.alternate_port: the new container starts on the port the live one does not use (service %s has %s)",
				field, p.service, lbText(pl.svc.GetLoadBalancer()))
		}
	}
	if pl.selector == "" {
		pl.selector = pl.svc.GetSelector()
	}
	sel, err := selector.Parse(pl.selector)
	if err != nil {
		return startPlan{}, invalid("selector", "%v", err)
	}
	if !p.dryRun {
		if rec, ok, err := e.activeRollout(ctx, p.service); err != nil {
			return startPlan{}, err
		} else if ok {
			return startPlan{}, activeError(p.service, rec)
		}
	}
	agents, _, total := e.cfg.Registry.List(fleet.Query{Selector: sel, Limit: e.cfg.MaxHosts + 1})
	if p.agentIDs != nil {
		agents = slices.DeleteFunc(agents, func(a fleet.Agent) bool { return !slices.Contains(p.agentIDs, a.Record.ID) })
		if total = len(agents); total == 0 {
			return startPlan{}, fault.Preconditionf("none of the hosts %s is matched by the service's selector %q",
				joinLimited(p.agentIDs, 20), pl.selector)
		}
	}
	switch {
	case total == 0:
		return startPlan{}, fault.Preconditionf("selector %q matches no registered agent", pl.selector)
	case total > e.cfg.MaxHosts:
		return startPlan{}, fault.Preconditionf("selector %q matches %d agents, at most %d per rollout", pl.selector, total, e.cfg.MaxHosts)
	}
	if pl.lbIDs, err = e.loadBalancers(pl.svc.GetLoadBalancer()); err != nil {
		return startPlan{}, err
	}
	if p.rollbackOf == "" && p.remediation == nil {
		// A rollback and an automatic restart go at once: they answer an
		// incident, and leave out a host that is away as before.
		if agents, err = e.awaitReconnecting(ctx, agents); err != nil {
			return startPlan{}, err
		}
	}
	cands := make([]Candidate, len(agents))
	for i, a := range agents {
		cands[i] = candidateOf(a, pl.svc.GetContainer(), pl.svc.GetLoadBalancer())
	}
	pl.plan = MakePlan(PlanInput{Image: p.image, Container: pl.svc.GetContainer(), Strategy: pl.strategy,
		LoadBalancer: pl.svc.GetLoadBalancer(), Hosts: cands, InPlace: p.remediation != nil})
	return pl, checkPlan(pl)
}

// checkPlan refuses a plan with offline hosts under OFFLINE_POLICY_FAIL,
// or with no host left to roll out.
func checkPlan(pl startPlan) error {
	if pl.strategy.GetOfflineHosts() == flotillav1.OfflinePolicy_OFFLINE_POLICY_FAIL && len(pl.plan.Offline) > 0 {
		return fault.Preconditionf("%d hosts are offline and strategy.offline_hosts is FAIL: %s",
			len(pl.plan.Offline), joinLimited(pl.plan.Offline, 20))
	}
	if len(pl.plan.Hosts) == 0 {
		return fault.Preconditionf("nothing to roll out: every host the selector %q matches is left out (%s)",
			pl.selector, exclusionSummary(pl.plan.Excluded))
	}
	return nil
}

// pendingHosts are the plan's hosts as the store keeps them before their
// batch starts.
func pendingHosts(plan Plan, strategy *flotillav1.RolloutStrategy) []store.RolloutHost {
	rows := make([]store.RolloutHost, len(plan.Hosts))
	for i, ph := range plan.Hosts {
		rows[i] = store.RolloutHost{AgentID: ph.AgentID, Batch: ph.Batch, Step: int32(flotillav1.HostStep_HOST_STEP_PENDING),
			Message: "waiting for its batch", ObservedImage: ph.ObservedImage, Server: ph.Server, WaitingOffline: ph.Offline}
		if ph.Offline {
			rows[i].Message = fmt.Sprintf("offline at the start; waiting up to offline_wait (%s) for it to come back", strategy.GetOfflineWait().AsDuration())
		}
	}
	return rows
}

// dryRunRollout is the answer to a dry run: the rollout as it would start,
// without an ID.
func dryRunRollout(def *flotillav1.Rollout, rows []store.RolloutHost) *flotillav1.Rollout {
	out := proto.Clone(def).(*flotillav1.Rollout)
	out.State, out.Message = flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, "dry run: nothing was started"
	for _, h := range rows {
		out.Hosts = append(out.Hosts, hostProto(h))
	}
	return out
}

// storeRollout gives the rollout an ID and stores it, its hosts and its
// first event (PREPARING) at once; the store refuses it while the service
// has another active rollout.
func (e *Engine) storeRollout(ctx context.Context, p startParams, pl startPlan, def *flotillav1.Rollout,
	rows []store.RolloutHost, now time.Time) (store.Rollout, error) {
	id := p.id
	if id == "" {
		var err error
		if id, err = e.cfg.NewID(IDPrefix); err != nil {
			return store.Rollout{}, errors.New("could not generate a rollout ID")
		}
	}
	def.Id = id
	defBytes, err := marshal(def)
	if err != nil {
		return store.Rollout{}, errors.New("could not encode the rollout")
	}
	svcBytes, err := marshal(pl.svc)
	if err != nil {
		return store.Rollout{}, errors.New("could not encode the service")
	}
	msg := fmt.Sprintf("pulling %s on %d hosts", p.image, len(rows))
	state := flotillav1.RolloutState_ROLLOUT_STATE_PREPARING
	if p.remediation != nil {
		// Nothing to pull: the hosts are restarted on the image they run.
		msg, state = fmt.Sprintf("restarting %d hosts in place: %s", len(rows), p.reason), flotillav1.RolloutState_ROLLOUT_STATE_RUNNING
	}
	rec := store.Rollout{
		ID: id, Service: p.service, Image: p.image, RollbackOf: p.rollbackOf, CreatedBy: def.GetCreatedBy(), Definition: defBytes,
		ServiceSpec: svcBytes, LoadBalancers: pl.lbIDs, State: int32(state), Message: msg, Prepared: p.remediation != nil,
		StopState: int32(flotillav1.RolloutState_ROLLOUT_STATE_FAILED), CreatedAt: now,
	}
	for i := range rows {
		rows[i].RolloutID = id
	}
	_, err = e.cfg.Store.CreateRollout(ctx, rec, rows, []store.RolloutEvent{stateEvent(now, state, msg)})
	var active *store.ActiveRolloutError
	switch {
	case errors.As(err, &active):
		if other, ok, gerr := e.activeRollout(ctx, p.service); gerr == nil && ok {
			return store.Rollout{}, activeError(p.service, other)
		}
		return store.Rollout{}, fault.Preconditionf("service %s already has an active rollout: %s", p.service, active.RolloutID)
	case err != nil:
		e.log.Error("storing a rollout failed", logging.Service(p.service), zap.Error(err))
		return store.Rollout{}, unavailable(err, "the rollout could not be stored; nothing was started")
	}
	return rec, nil
}

// loadBalancers resolves the load-balancer agents of a service. Every one
// must be connected: a drain that cannot be delivered would fail every host.
func (e *Engine) loadBalancers(lb *flotillav1.LoadBalancer) ([]string, error) {
	if lb == nil {
		return nil, nil
	}
	sel, err := selector.Parse(lb.GetSelector())
	if err != nil {
		return nil, fault.Preconditionf("the service's load_balancer.selector does not parse: %v", err)
	}
	agents, _, total := e.cfg.Registry.List(fleet.Query{Selector: sel, Limit: 1000})
	if total == 0 {
		return nil, fault.Preconditionf("the service's load_balancer.selector %q matches no agent: nothing could drain the hosts", lb.GetSelector())
	}
	var ids, offline []string
	for _, a := range agents {
		ids = append(ids, a.Record.ID)
		if a.Record.State != store.AgentConnected {
			offline = append(offline, a.Record.ID)
		}
	}
	if len(offline) > 0 {
		return nil, fault.Preconditionf("load-balancer agents offline: %s; hosts could not be drained", joinLimited(offline, 20))
	}
	return ids, nil
}

func exclusionSummary(ex []*flotillav1.ExcludedHost) string {
	counts := map[string]int{}
	for _, x := range ex {
		counts[x.GetReason()]++
	}
	reasons := make([]string, 0, len(counts))
	for r := range counts {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%d %s", counts[r], r)
	}
	return strings.Join(parts, "; ")
}

func lbText(lb *flotillav1.LoadBalancer) string {
	if lb == nil {
		return "no load_balancer: without one a host's traffic cannot move to a new container, so its restart drops requests whatever the strategy"
	}
	return fmt.Sprintf("no alternate_port (server_port %d)", lb.GetServerPort())
}
