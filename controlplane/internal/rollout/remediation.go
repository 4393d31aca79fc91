package rollout

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
)

// RemediationActor is the principal of the automatic restarts of the
// services' remediation policies: their rollouts' created_by and their
// audit entries' principal.
const RemediationActor = "system:remediation"

// StartRemediation restarts some hosts of a service in place, on the
// image they run, as the rollout id, through the steps of a rollout: drain
// on the service's load balancer, restart (a RestartCommand without an
// image), the health gate of the service's default strategy, undrain. The
// hosts form one batch, at most the service's max_unavailable of them in
// progress at once. The rollout is marked (Rollout.remediation,
// created_by RemediationActor), has no pre-pull, no canary, no analysis
// and no rollback, and is refused like any start while the service has an
// active rollout. reason is the trigger ("threshold", "growth"); evidence
// says what was measured, one line per host.
func (e *Engine) StartRemediation(ctx context.Context, id, service string, agentIDs []string, reason string, evidence []string) error {
	if len(agentIDs) == 0 {
		return fault.Invalid("agent_ids", "at least one host to restart is required")
	}
	_, err := e.start(ctx, startParams{
		id: id, service: service, createdBy: RemediationActor, agentIDs: slices.Clone(agentIDs),
		reason:      fmt.Sprintf("memory remediation (%s): %s", reason, strings.Join(evidence, "; ")),
		remediation: &flotillav1.RolloutRemediation{Reason: reason, Evidence: slices.Clone(evidence)},
	})
	return err
}

// ActiveRollout returns the ID of the service's active rollout and
// whether it is an automatic restart ("" when none).
func (e *Engine) ActiveRollout(ctx context.Context, service string) (id string, remediation bool, err error) {
	rec, ok, err := e.activeRollout(ctx, service)
	if err != nil || !ok {
		return "", false, err
	}
	return rec.ID, rec.CreatedBy == RemediationActor, nil
}

// remediationStrategy is the strategy of an automatic restart of n hosts:
// the service's health gate and max_unavailable, one batch, nothing else.
func remediationStrategy(def *flotillav1.RolloutStrategy, n int) *flotillav1.RolloutStrategy {
	s := &flotillav1.RolloutStrategy{
		Batch:          &flotillav1.RolloutStrategy_BatchSize{BatchSize: int32(max(n, 1))},
		MaxUnavailable: def.GetMaxUnavailable(), MinHealthyTime: def.GetMinHealthyTime(), HealthyDeadline: def.GetHealthyDeadline(),
		MaxFailures:  &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: int32(max(n, 1))}},
		OfflineHosts: flotillav1.OfflinePolicy_OFFLINE_POLICY_SKIP,
	}
	return proto.Clone(s).(*flotillav1.RolloutStrategy)
}

// remediationImage is the image an automatic restart's hosts run (shown
// as the rollout's image; the restart keeps whatever each host runs).
func remediationImage(pl startPlan) string {
	for _, h := range pl.plan.Hosts {
		if h.ObservedImage != "" {
			return h.ObservedImage
		}
	}
	return "(unknown)"
}
