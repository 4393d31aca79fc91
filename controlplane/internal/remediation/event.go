package remediation

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
)

var actions = map[string]flotillav1.RemediationAction{
	store.RemediationRestart:    flotillav1.RemediationAction_REMEDIATION_ACTION_RESTART,
	store.RemediationEscalation: flotillav1.RemediationAction_REMEDIATION_ACTION_ESCALATION,
	store.RemediationOOMKill:    flotillav1.RemediationAction_REMEDIATION_ACTION_OOM_KILL,
}

// EventProto is a stored remediation event as the API shows it.
func EventProto(r store.Remediation) *flotillav1.RemediationEvent {
	return &flotillav1.RemediationEvent{
		Id: r.ID, Service: r.Service, AgentId: r.AgentID, Action: actions[r.Action], Reason: r.Reason,
		Evidence: r.Evidence, RolloutId: r.RolloutID, OccurredAt: timestamppb.New(r.OccurredAt),
	}
}
