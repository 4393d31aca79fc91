package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

func unavailable(err error, what string) error {
	return fault.Store(what, err)
}

// PutService validates and stores a service definition.
func (e *Engine) PutService(ctx context.Context, svc *flotillav1.Service) (*flotillav1.Service, error) {
	if err := ValidateService(svc); err != nil {
		return nil, err
	}
	spec := proto.Clone(svc).(*flotillav1.Service)
	spec.CreatedAt, spec.UpdatedAt, spec.CurrentImage = nil, nil, ""
	b, err := marshal(spec)
	if err != nil {
		return nil, errors.New("could not encode the service")
	}
	now := e.cfg.Now()
	stored, err := e.cfg.Store.PutService(ctx, store.Service{Name: spec.GetName(), Spec: b, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		e.log.Error("storing a service failed", logging.Service(spec.GetName()), zap.Error(err))
		return nil, unavailable(err, "the service could not be stored")
	}
	e.log.Info("service stored", logging.Service(spec.GetName()), zap.String("container", spec.GetContainer()),
		zap.String("selector", spec.GetSelector()), zap.Bool("load_balancer", spec.GetLoadBalancer() != nil))
	return e.serviceOut(ctx, stored)
}

// GetService returns a service with its current image.
func (e *Engine) GetService(ctx context.Context, name string) (*flotillav1.Service, error) {
	if err := ValidateServiceName("name", name); err != nil {
		return nil, err
	}
	s, err := e.getService(ctx, name, "name")
	if err != nil {
		return nil, err
	}
	return e.serviceOut(ctx, s)
}

func (e *Engine) getService(ctx context.Context, name, field string) (store.Service, error) {
	s, err := e.cfg.Store.GetService(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Service{}, &fault.NotFoundError{Field: field, Kind: "service", ID: name, Hint: "ListServices shows the services; PutService creates one"}
	}
	if err != nil {
		return store.Service{}, unavailable(err, "reading the service failed")
	}
	return s, nil
}

// ListServices returns every service by name.
func (e *Engine) ListServices(ctx context.Context) ([]*flotillav1.Service, error) {
	list, err := e.cfg.Store.ListServices(ctx)
	if err != nil {
		return nil, unavailable(err, "listing services failed")
	}
	out := make([]*flotillav1.Service, 0, len(list))
	for _, s := range list {
		svc, err := e.serviceOut(ctx, s)
		if err != nil {
			return nil, err
		}
		out = append(out, svc)
	}
	return out, nil
}

func (e *Engine) serviceOut(ctx context.Context, s store.Service) (*flotillav1.Service, error) {
	current, err := e.lastSucceeded(ctx, s.Name, "")
	if err != nil {
		return nil, err
	}
	out, err := serviceProto(s, current.Image)
	if err != nil {
		return nil, fmt.Errorf("service %s is unreadable", s.Name)
	}
	return out, nil
}

// lastSucceeded returns the service's latest SUCCEEDED rollout (by
// creation) whose image differs from skipImage; a zero Rollout when none.
func (e *Engine) lastSucceeded(ctx context.Context, service, skipImage string) (store.Rollout, error) {
	before := ""
	for {
		page, err := e.cfg.Store.ListRollouts(ctx, store.RolloutQuery{Service: service, Before: before, Limit: 50,
			States: []int32{int32(flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED)}})
		if err != nil {
			return store.Rollout{}, unavailable(err, "reading the service's rollouts failed")
		}
		for _, r := range page {
			// An automatic restart changes no image: not a revision.
			if r.Image != skipImage && r.CreatedBy != RemediationActor {
				return r, nil
			}
		}
		if len(page) < 50 {
			return store.Rollout{}, nil
		}
		before = page[len(page)-1].ID
	}
}

// GetRollout returns a rollout with its plan and hosts.
func (e *Engine) GetRollout(ctx context.Context, id string) (*flotillav1.Rollout, error) {
	rec, err := e.getRollout(ctx, id)
	if err != nil {
		return nil, err
	}
	hosts, err := e.cfg.Store.ListRolloutHosts(ctx, id)
	if err != nil {
		return nil, unavailable(err, "reading the rollout's hosts failed")
	}
	out, err := rolloutProto(rec, hosts)
	if err != nil {
		return nil, fmt.Errorf("rollout %s is unreadable", id)
	}
	out.Window = e.windowStatus(rec, out)
	return out, nil
}

func (e *Engine) getRollout(ctx context.Context, id string) (store.Rollout, error) {
	rec, err := e.cfg.Store.GetRollout(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Rollout{}, &fault.NotFoundError{Field: "rollout_id", Kind: "rollout", ID: id, Hint: "ListRollouts shows them"}
	}
	if err != nil {
		return store.Rollout{}, unavailable(err, "reading the rollout failed")
	}
	return rec, nil
}

// ListRollouts returns rollouts newest first, without hosts.
func (e *Engine) ListRollouts(ctx context.Context, q store.RolloutQuery) ([]*flotillav1.Rollout, error) {
	recs, err := e.cfg.Store.ListRollouts(ctx, q)
	if err != nil {
		return nil, unavailable(err, "listing rollouts failed")
	}
	out := make([]*flotillav1.Rollout, 0, len(recs))
	for _, rec := range recs {
		r, err := rolloutProto(rec, nil)
		if err != nil {
			e.log.Warn("skipping an unreadable rollout", logging.RolloutID(rec.ID), zap.Error(err))
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// PauseRollout stops a rollout from starting new hosts; hosts in progress
// finish.
func (e *Engine) PauseRollout(ctx context.Context, id, reason string) (*flotillav1.Rollout, error) {
	return e.control(ctx, controlRequest{op: "pause", reason: reason}, id)
}

// ResumeRollout continues a paused rollout.
func (e *Engine) ResumeRollout(ctx context.Context, id string) (*flotillav1.Rollout, error) {
	return e.control(ctx, controlRequest{op: "resume"}, id)
}

// AbortRollout stops a rollout: hosts in progress finish, no new host
// starts, and with rollback every host it changed goes back.
func (e *Engine) AbortRollout(ctx context.Context, id, reason string, rollback bool) (*flotillav1.Rollout, error) {
	return e.control(ctx, controlRequest{op: "abort", reason: reason, rollback: rollback}, id)
}

func (e *Engine) control(ctx context.Context, req controlRequest, id string) (*flotillav1.Rollout, error) {
	r := e.runner(id)
	if r == nil && e.claimer != nil {
		return e.controlRemote(ctx, req, id)
	}
	if r == nil {
		rec, err := e.getRollout(ctx, id)
		if err != nil {
			return nil, err
		}
		if Terminal(flotillav1.RolloutState(rec.State)) {
			return nil, fault.Preconditionf("rollout %s already ended (%s)", id, flotillav1.RolloutState(rec.State))
		}
		return nil, fault.Unavailablef("rollout %s is not running in this control plane yet; retry", id)
	}
	err := r.call(ctx, req)
	if errors.Is(err, errRunnerGone) && e.claimer != nil {
		// The runner stopped meanwhile: finished, or this replica lost the
		// rollout to another one.
		return e.controlRemote(ctx, req, id)
	}
	if errors.Is(err, errRunnerGone) {
		rec, gerr := e.getRollout(ctx, id)
		if gerr == nil && Terminal(flotillav1.RolloutState(rec.State)) {
			return nil, fault.Preconditionf("rollout %s already ended (%s)", id, flotillav1.RolloutState(rec.State))
		}
		return nil, fault.Unavailablef("rollout %s: the control plane is stopping; retry", id)
	}
	if err != nil {
		return nil, err
	}
	e.log.Info("operator "+req.op, logging.RolloutID(id), zap.String("reason", req.reason), zap.Bool("rollback", req.rollback))
	return e.GetRollout(ctx, id)
}

// activeRollout returns the service's active rollout, if any.
func (e *Engine) activeRollout(ctx context.Context, service string) (store.Rollout, bool, error) {
	recs, err := e.cfg.Store.ListRollouts(ctx, store.RolloutQuery{Service: service, Active: true, Limit: 1})
	if err != nil {
		return store.Rollout{}, false, unavailable(err, "reading the service's rollouts failed")
	}
	if len(recs) == 0 {
		return store.Rollout{}, false, nil
	}
	return recs[0], true, nil
}

func activeError(service string, rec store.Rollout) error {
	return fault.Preconditionf("service %s already has an active rollout: %s (%s, image %s); wait for it to end or abort it",
		service, rec.ID, flotillav1.RolloutState(rec.State), rec.Image)
}

// RollbackService starts a rollout, on behalf of createdBy, back to the image of the previous
// successful rollout (or of a named one), linked to the rollout it undoes.
func (e *Engine) RollbackService(ctx context.Context, req *flotillav1.RollbackServiceRequest, createdBy string) (*flotillav1.Rollout, error) {
	if err := ValidateServiceName("service", req.GetService()); err != nil {
		return nil, err
	}
	if err := ValidateStrategy("strategy", req.GetStrategy()); err != nil {
		return nil, err
	}
	if err := validateText("reason", req.GetReason(), maxReason); err != nil {
		return nil, err
	}
	if _, err := e.getService(ctx, req.GetService(), "service"); err != nil {
		return nil, err
	}
	if rec, ok, err := e.activeRollout(ctx, req.GetService()); err != nil {
		return nil, err
	} else if ok {
		if switched, err := switchedBlueGreen(rec); err != nil || switched {
			return e.switchBack(ctx, req, rec, err)
		}
		return nil, activeError(req.GetService(), rec)
	}
	latest, err := e.cfg.Store.ListRollouts(ctx, store.RolloutQuery{Service: req.GetService(), Limit: 50})
	if err != nil {
		return nil, unavailable(err, "reading the service's rollouts failed")
	}
	// Automatic restarts change no image: the rollout to undo is the
	// latest other one.
	latest = slices.DeleteFunc(latest, func(r store.Rollout) bool { return r.CreatedBy == RemediationActor })
	if len(latest) == 0 {
		return nil, fault.Preconditionf("service %s has no rollout to undo", req.GetService())
	}
	undo := latest[0]
	var target store.Rollout
	if id := req.GetToRolloutId(); id != "" {
		target, err = e.getRollout(ctx, id)
		if err != nil {
			return nil, err
		}
		switch {
		case target.Service != req.GetService():
			return nil, invalid("to_rollout_id", "rollout %s belongs to service %s, not %s", id, target.Service, req.GetService())
		case flotillav1.RolloutState(target.State) != flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED:
			return nil, fault.Preconditionf("to_rollout_id: rollout %s is %s; only a succeeded rollout's image is a known-good revision",
				id, flotillav1.RolloutState(target.State))
		}
	} else {
		// The revision before the latest rollout: the latest successful
		// rollout before it with another image.
		skip := ""
		if flotillav1.RolloutState(undo.State) == flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
			skip = undo.Image
		}
		if target, err = e.lastSucceeded(ctx, req.GetService(), skip); err != nil {
			return nil, err
		}
		if target.ID == "" {
			return nil, fault.Preconditionf("service %s has no successful rollout before %s to go back to", req.GetService(), undo.ID)
		}
	}
	reason := req.GetReason()
	if reason == "" {
		reason = fmt.Sprintf("roll back %s to the image of %s", undo.ID, target.ID)
	}
	out, err := e.start(ctx, startParams{
		service: req.GetService(), image: target.Image, strategy: req.GetStrategy(), reason: reason, rollbackOf: undo.ID, createdBy: createdBy,
	})
	if err == nil {
		e.cfg.Metrics.rollback("service")
	}
	return out, err
}

// StartRollout validates a request and starts the rollout on behalf of
// createdBy (the caller's principal, "kind:id"), or returns its plan for a
// dry run.
func (e *Engine) StartRollout(ctx context.Context, req *flotillav1.StartRolloutRequest, createdBy string) (*flotillav1.Rollout, error) {
	if err := ValidateServiceName("service", req.GetService()); err != nil {
		return nil, err
	}
	if err := ValidateImage("image", req.GetImage()); err != nil {
		return nil, err
	}
	if req.GetSelector() != "" {
		if err := validateSelector("selector", req.GetSelector()); err != nil {
			return nil, err
		}
	}
	if err := ValidateStrategy("strategy", req.GetStrategy()); err != nil {
		return nil, err
	}
	if err := ValidateStartReason(req); err != nil {
		return nil, err
	}
	return e.start(ctx, startParams{
		service: req.GetService(), image: req.GetImage(), selector: req.GetSelector(), strategy: req.GetStrategy(),
		reason: req.GetReason(), dryRun: req.GetDryRun(), createdBy: createdBy, overrideWindow: req.GetOverrideWindow(),
	})
}

func joinLimited(ids []string, n int) string {
	if len(ids) <= n {
		return strings.Join(ids, ", ")
	}
	return strings.Join(ids[:n], ", ") + fmt.Sprintf(" and %d more", len(ids)-n)
}

// switchedBlueGreen reports whether an active rollout is a blue-green one
// past its switch (SWITCHED, or BAKING or PAUSED after it): its previous
// containers still run, and a rollback switches back to them.
func switchedBlueGreen(rec store.Rollout) (bool, error) {
	switch flotillav1.RolloutState(rec.State) {
	case flotillav1.RolloutState_ROLLOUT_STATE_SWITCHED, flotillav1.RolloutState_ROLLOUT_STATE_BAKING, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED:
	default:
		return false, nil
	}
	def := &flotillav1.Rollout{}
	if err := proto.Unmarshal(rec.Definition, def); err != nil {
		return false, fmt.Errorf("rollout %s is unreadable", rec.ID)
	}
	return def.GetStrategy().GetBlueGreen() != nil && rec.CurrentBatch >= len(def.GetBatches()), nil
}

// switchBack answers RollbackService for a switched blue-green rollout: it
// stops it with a rollback, which switches every load balancer back to the
// previous containers at once, and returns it.
func (e *Engine) switchBack(ctx context.Context, req *flotillav1.RollbackServiceRequest, rec store.Rollout, err error) (*flotillav1.Rollout, error) {
	switch {
	case err != nil:
		return nil, err
	case req.GetToRolloutId() != "":
		return nil, invalid("to_rollout_id", "must be empty: blue-green rollout %s is switched and a rollback switches back to its previous containers", rec.ID)
	case req.GetStrategy() != nil:
		return nil, invalid("strategy", "must be unset: blue-green rollout %s is switched and a rollback switches back to its previous containers", rec.ID)
	}
	reason := "switched back by RollbackService"
	if req.GetReason() != "" {
		reason += ": " + req.GetReason()
	}
	out, err := e.control(ctx, controlRequest{op: "abort", reason: reason, rollback: true}, rec.ID)
	if err == nil {
		e.cfg.Metrics.rollback("service")
	}
	return out, err
}
