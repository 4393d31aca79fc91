package rollout

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/selector"
	"flotilla.dev/controlplane/internal/store"
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
}

// start plans a rollout and, unless it is a dry run, stores it and hands it
// to a runner. A dry run returns the very plan a start would follow now.
func (e *Engine) start(ctx context.Context, p startParams) (*flotillav1.Rollout, error) {
	stored, err := e.getService(ctx, p.service, "service")
	if err != nil {
		return nil, err
	}
	svc := &flotillav1.Service{}
	if err := proto.Unmarshal(stored.Spec, svc); err != nil {
		return nil, fmt.Errorf("service %s is unreadable", p.service)
	}
	strategy := p.strategy
	if strategy == nil {
		strategy = svc.GetDefaultStrategy()
	}
	strategy = withDefaults(strategy)
	selText := p.selector
	if selText == "" {
		selText = svc.GetSelector()
	}
	sel, err := selector.Parse(selText)
	if err != nil {
		return nil, invalid("selector", "%v", err)
	}
	if !p.dryRun {
		if rec, ok, err := e.activeRollout(ctx, p.service); err != nil {
			return nil, err
		} else if ok {
			return nil, activeError(p.service, rec)
		}
	}
	agents, _, total := e.cfg.Registry.List(fleet.Query{Selector: sel, Limit: e.cfg.MaxHosts + 1})
	switch {
	case total == 0:
		return nil, fault.Preconditionf("selector %q matches no registered agent", selText)
	case total > e.cfg.MaxHosts:
		return nil, fault.Preconditionf("selector %q matches %d agents, at most %d per rollout", selText, total, e.cfg.MaxHosts)
	}
	lbIDs, err := e.loadBalancers(svc.GetLoadBalancer())
	if err != nil {
		return nil, err
	}
	cands := make([]Candidate, len(agents))
	for i, a := range agents {
		cands[i] = candidateOf(a, svc.GetContainer(), svc.GetLoadBalancer())
	}
	plan := MakePlan(PlanInput{Image: p.image, Container: svc.GetContainer(), Strategy: strategy, LoadBalancer: svc.GetLoadBalancer(), Hosts: cands})
	if strategy.GetOfflineHosts() == flotillav1.OfflinePolicy_OFFLINE_POLICY_FAIL && len(plan.Offline) > 0 {
		return nil, fault.Preconditionf("%d hosts are offline and strategy.offline_hosts is FAIL: %s",
			len(plan.Offline), joinLimited(plan.Offline, 20))
	}
	if len(plan.Hosts) == 0 {
		return nil, fault.Preconditionf("nothing to roll out: every host the selector %q matches is left out (%s)",
			selText, exclusionSummary(plan.Excluded))
	}
	createdBy := p.createdBy
	now := e.cfg.Now()
	def := &flotillav1.Rollout{
		Service: p.service, Image: p.image, Strategy: strategy, Selector: selText, Reason: p.reason, CreatedBy: createdBy,
		Batches: plan.Batches, Excluded: plan.Excluded, CreatedAt: ts(now), RollbackOf: p.rollbackOf,
	}
	rows := make([]store.RolloutHost, len(plan.Hosts))
	for i, ph := range plan.Hosts {
		rows[i] = store.RolloutHost{AgentID: ph.AgentID, Batch: ph.Batch, Step: int32(flotillav1.HostStep_HOST_STEP_PENDING),
			Message: "waiting for its batch", ObservedImage: ph.ObservedImage, Server: ph.Server, WaitingOffline: ph.Offline}
		if ph.Offline {
			rows[i].Message = fmt.Sprintf("offline at the start; waiting up to offline_wait (%s) for it to come back", strategy.GetOfflineWait().AsDuration())
		}
	}
	msg := fmt.Sprintf("pulling %s on %d hosts", p.image, len(rows))
	if p.dryRun {
		out := proto.Clone(def).(*flotillav1.Rollout)
		out.State, out.Message = flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, "dry run: nothing was started"
		for _, h := range rows {
			out.Hosts = append(out.Hosts, hostProto(h))
		}
		return out, nil
	}
	id, err := e.cfg.NewID(IDPrefix)
	if err != nil {
		return nil, errors.New("could not generate a rollout ID")
	}
	def.Id = id
	defBytes, err := marshal(def)
	if err != nil {
		return nil, errors.New("could not encode the rollout")
	}
	svcBytes, err := marshal(svc)
	if err != nil {
		return nil, errors.New("could not encode the service")
	}
	rec := store.Rollout{
		ID: id, Service: p.service, Image: p.image, RollbackOf: p.rollbackOf, CreatedBy: createdBy, Definition: defBytes,
		ServiceSpec: svcBytes, LoadBalancers: lbIDs, State: int32(flotillav1.RolloutState_ROLLOUT_STATE_PREPARING), Message: msg,
		StopState: int32(flotillav1.RolloutState_ROLLOUT_STATE_FAILED), CreatedAt: now,
	}
	for i := range rows {
		rows[i].RolloutID = id
	}
	_, err = e.cfg.Store.CreateRollout(ctx, rec, rows, []store.RolloutEvent{stateEvent(now, flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, msg)})
	var active *store.ActiveRolloutError
	switch {
	case errors.As(err, &active):
		if rec, ok, gerr := e.activeRollout(ctx, p.service); gerr == nil && ok {
			return nil, activeError(p.service, rec)
		}
		return nil, fault.Preconditionf("service %s already has an active rollout: %s", p.service, active.RolloutID)
	case err != nil:
		e.log.Error("storing a rollout failed", zap.String("service", p.service), zap.Error(err))
		return nil, unavailable(err, "the rollout could not be stored; nothing was started")
	}
	r, err := newRunner(e, rec, rows)
	if err != nil {
		return nil, fmt.Errorf("rollout %s: %v", id, err)
	}
	for _, h := range r.hosts {
		h.pull = pullNotCreated // a new rollout has no command yet
	}
	e.cfg.Metrics.rolloutStarted()
	e.log.Info("rollout started", zap.String("rollout", id), zap.String("service", p.service), zap.String("image", p.image),
		zap.String("by", createdBy), zap.Int("hosts", len(rows)), zap.Int("batches", len(plan.Batches)),
		zap.Int("excluded", len(plan.Excluded)), zap.String("rollback_of", p.rollbackOf), zap.String("reason", p.reason))
	e.launch(r)
	out, err := rolloutProto(rec, rows)
	if err != nil {
		return nil, fmt.Errorf("rollout %s is unreadable", id)
	}
	return out, nil
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
