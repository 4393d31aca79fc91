package notify

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/backups"
	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/rollout"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/command"
)

// maxEvidenceHosts bounds the hosts an event lists as evidence; the rest
// are counted.
const maxEvidenceHosts = 20

// rolloutType is the event type of a rollout's new state ("" for states
// nobody subscribes to: running, rolling back).
func rolloutType(sc rollout.StateChange) string {
	switch sc.To {
	case flotillav1.RolloutState_ROLLOUT_STATE_PREPARING:
		if sc.From == flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED {
			return TypeRolloutStarted
		}
	case flotillav1.RolloutState_ROLLOUT_STATE_PAUSED:
		return TypeRolloutPaused
	case flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED:
		return TypeRolloutSucceeded
	case flotillav1.RolloutState_ROLLOUT_STATE_FAILED, flotillav1.RolloutState_ROLLOUT_STATE_ABORTED,
		flotillav1.RolloutState_ROLLOUT_STATE_ROLLBACK_FAILED:
		return TypeRolloutFailed
	case flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK:
		return TypeRolloutRolledBack
	}
	return ""
}

// stateWord is a rollout state as people read it ("rolled_back").
func stateWord(s flotillav1.RolloutState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ROLLOUT_STATE_"))
}

// RolloutEvent is the event of a rollout's state change, if it has one.
func RolloutEvent(sc rollout.StateChange) (Event, bool) {
	t := rolloutType(sc)
	if t == "" || sc.Remediation && (t == TypeRolloutStarted || t == TypeRolloutSucceeded) {
		// An automatic restart's start is announced as restart.automatic
		// by the remediation driver; its failure is still a failure.
		return Event{}, false
	}
	ev := Event{
		ID: fmt.Sprintf("ev-%s-%s-%d", sc.RolloutID, stateWord(sc.To), sc.At.UnixNano()), Type: t, OrderKey: sc.RolloutID,
		OccurredAt: sc.At, Reason: sc.Message,
		Summary: fmt.Sprintf("Rollout %s of %s to %s: %s", sc.RolloutID, sc.Service, sc.Image, strings.ReplaceAll(stateWord(sc.To), "_", " ")),
		Subject: map[string]string{"rollout_id": sc.RolloutID, "service": sc.Service, "image": sc.Image},
		Evidence: map[string]any{
			"state": stateWord(sc.To), "from": stateWord(sc.From), "hosts": sc.Hosts, "batches": sc.Batches,
		},
	}
	if sc.RollbackOf != "" {
		ev.Subject["rollback_of"] = sc.RollbackOf
	}
	if len(sc.FailedHosts) > 0 {
		var hosts []map[string]string
		for i, h := range sc.FailedHosts {
			if i == maxEvidenceHosts {
				break
			}
			hosts = append(hosts, map[string]string{"agent_id": h.AgentID,
				"step": strings.ToLower(strings.TrimPrefix(h.Step.String(), "HOST_STEP_")), "message": h.Message})
		}
		ev.Evidence["failed_hosts"], ev.Evidence["failed_host_count"] = hosts, len(sc.FailedHosts)
	}
	return ev, true
}

// AgentEvent is the event of an agent's state change, if it has one:
// lost, or back from lost.
func AgentEvent(c fleet.StateChange) (Event, bool) {
	var t, what string
	switch {
	case c.To == store.AgentLost && c.From != store.AgentLost:
		t, what = TypeAgentLost, "lost"
	case c.From == store.AgentLost && c.To == store.AgentConnected:
		t, what = TypeAgentBack, "back"
	default:
		return Event{}, false
	}
	name := c.AgentID
	if c.Hostname != "" {
		name = c.Hostname + " (" + c.AgentID + ")"
	}
	return Event{
		ID: fmt.Sprintf("ev-%s-%s-%d", c.AgentID, what, c.At.UnixNano()), Type: t, OrderKey: c.AgentID, OccurredAt: c.At,
		Summary: "Agent " + name + " is " + what, Reason: c.Reason,
		Subject:  map[string]string{"agent_id": c.AgentID, "hostname": c.Hostname},
		Evidence: map[string]any{"from": c.From, "to": c.To},
	}, true
}

// CommandEvent is the event of a fleet command's end, if it has one: a
// failed backup or drill (the backup policies' jobs are fleet commands
// too), or another failed command.
func CommandEvent(f commands.Finished) (Event, bool) {
	if f.State != flotillav1.FleetCommandState_FLEET_COMMAND_STATE_FAILED {
		return Event{}, false
	}
	t := TypeCommandFailed
	switch f.Kind {
	case command.KindBackup, command.KindBaseBackup:
		t = TypeBackupFailed
	case command.KindDrill:
		t = TypeDrillFailed
	}
	ev := Event{
		ID: "ev-" + f.ID + "-failed", Type: t, OrderKey: f.ID, OccurredAt: f.At,
		Summary:  fmt.Sprintf("Fleet command %s (%s) failed on %d of %d hosts", f.ID, f.Kind, len(f.Failed), total(f.Counts)),
		Subject:  map[string]string{"command_id": f.ID, "kind": f.Kind, "created_by": f.CreatedBy},
		Evidence: map[string]any{"hosts_by_state": f.Counts, "failed_host_count": len(f.Failed)},
	}
	var hosts []map[string]string
	for i, h := range f.Failed {
		if i == maxEvidenceHosts {
			break
		}
		if i == 0 {
			ev.Reason = h.AgentID + ": " + h.Message
		}
		hosts = append(hosts, map[string]string{"agent_id": h.AgentID,
			"state": strings.ToLower(strings.TrimPrefix(h.State.String(), "COMMAND_STATE_")), "message": h.Message})
	}
	ev.Evidence["failed_hosts"] = hosts
	return ev, true
}

func total(counts map[string]int32) int {
	n := 0
	for _, c := range counts {
		n += int(c)
	}
	return n
}

// OnRollout publishes a rollout's state change (rollout.Config
// .OnStateChange). It waits for the outbox write only; a failure is
// logged and counted, never returned to the rollout.
func (n *Notifier) OnRollout(ctx context.Context, sc rollout.StateChange) {
	if ev, ok := RolloutEvent(sc); ok {
		_ = n.Publish(context.WithoutCancel(ctx), ev)
	}
}

// AnalysisEvent is the event of an analysis that failed a rollout, with
// the deciding measurement as evidence.
func AnalysisEvent(f rollout.AnalysisFailure) Event {
	where := fmt.Sprintf("batch %d", f.Batch+1)
	if f.Batch < 0 {
		where = "the bake"
	}
	results := make([]map[string]any, 0, len(f.Results))
	for _, res := range f.Results {
		results = append(results, map[string]any{
			"query": res.GetQuery(), "promql": res.GetPromql(), "value": jsonNumber(res.GetValue()),
			"threshold": jsonNumber(res.GetThreshold()), "message": res.GetMessage(),
			"verdict": strings.ToLower(strings.TrimPrefix(res.GetVerdict().String(), "ANALYSIS_VERDICT_")),
		})
	}
	// A rollout's analysis fails it once: the rollout's ID identifies it.
	return Event{
		ID: "ev-" + f.RolloutID + "-analysis-failed", Type: TypeAnalysisFailed, OrderKey: f.RolloutID, OccurredAt: f.At,
		Summary:  fmt.Sprintf("Analysis failed rollout %s of %s to %s at %s", f.RolloutID, f.Service, f.Image, where),
		Reason:   f.Reason,
		Subject:  map[string]string{"rollout_id": f.RolloutID, "service": f.Service, "image": f.Image},
		Evidence: map[string]any{"gate": where, "batch": f.Batch, "results": results, "auto_rollback": f.AutoRollback},
	}
}

// jsonNumber is v as JSON can carry it: a number, or its text for NaN
// and the infinities (a PromQL division by zero).
func jsonNumber(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return v
}

// OnAnalysis publishes an analysis that failed a rollout
// (rollout.Config.OnAnalysisFailed), like OnRollout.
func (n *Notifier) OnAnalysis(ctx context.Context, f rollout.AnalysisFailure) {
	_ = n.Publish(context.WithoutCancel(ctx), AnalysisEvent(f))
}

// OnAgent queues an agent's state change (fleet.Config.OnStateChange),
// without waiting: the registry calls it with its lock held.
func (n *Notifier) OnAgent(c fleet.StateChange) {
	if ev, ok := AgentEvent(c); ok {
		n.Emit(ev)
	}
}

// OnCommand publishes a fleet command's failure (commands.ManagerConfig
// .OnFinish).
func (n *Notifier) OnCommand(ctx context.Context, f commands.Finished) {
	if ev, ok := CommandEvent(f); ok {
		_ = n.Publish(context.WithoutCancel(ctx), ev)
	}
}

// BackupStaleEvent is the event of a backup policy whose newest successful
// backup is older than its schedule allows. Its ID comes from the policy
// and that backup's time: one event per staleness episode, whichever
// replica or restart reports it.
func BackupStaleEvent(st backups.Stale) Event {
	newest := "its newest successful backup finished " + st.LastSuccess.UTC().Format(time.RFC3339)
	if st.FirstEver {
		newest = "it has had no successful backup since its creation at " + st.LastSuccess.UTC().Format(time.RFC3339)
	}
	reason := "no run of the slot at " + st.Due.UTC().Format(time.RFC3339) + " or later succeeded on every host"
	switch {
	case st.Running != "":
		reason += "; run " + st.Running + " is still in progress"
	case st.LastMessage != "":
		reason += "; the last run, " + st.LastCommandID + ": " + st.LastMessage
	}
	ev := Event{
		ID: fmt.Sprintf("ev-backup-stale-%s-%d", st.Policy, st.LastSuccess.UnixNano()), Type: TypeBackupStale,
		OrderKey: "backup-policy/" + st.Policy, OccurredAt: st.At,
		Summary: fmt.Sprintf("Backups of policy %s (database %s) are stale: %s", st.Policy, st.Database, newest),
		Reason:  reason,
		Subject: map[string]string{"policy": st.Policy, "database": st.Database, "selector": st.Selector},
		Evidence: map[string]any{
			"last_success": st.LastSuccess.UTC().Format(time.RFC3339), "due": st.Due.UTC().Format(time.RFC3339),
			"deadline": st.Deadline.UTC().Format(time.RFC3339),
		},
	}
	if st.LastCommandID != "" {
		ev.Evidence["last_command_id"] = st.LastCommandID
	}
	if st.Running != "" {
		ev.Evidence["running_command_id"] = st.Running
	}
	return ev
}

// OnBackupStale publishes a stale backup policy (backups.SchedulerConfig
// .OnStale). It waits for the outbox write only; a failure is logged and
// counted, never returned to the scheduler.
func (n *Notifier) OnBackupStale(ctx context.Context, st backups.Stale) {
	_ = n.Publish(context.WithoutCancel(ctx), BackupStaleEvent(st))
}

// RemediationEvent is the event of an automatic restart (restart.automatic)
// or of an escalation of its guard rails (restart.escalated); an OOM kill
// has none of its own.
func RemediationEvent(r store.Remediation) (Event, bool) {
	ev := Event{
		ID: "ev-" + r.ID, OrderKey: r.Service + "/" + r.AgentID, OccurredAt: r.OccurredAt, Reason: r.Reason,
		Subject:  map[string]string{"service": r.Service, "agent_id": r.AgentID},
		Evidence: map[string]any{"measured": r.Evidence},
	}
	switch r.Action {
	case store.RemediationRestart:
		ev.Type = TypeAutomaticRestart
		ev.Summary = fmt.Sprintf("Service %s: the container on %s was restarted automatically for its memory (%s)", r.Service, r.AgentID, r.Reason)
		ev.Subject["rollout_id"] = r.RolloutID
	case store.RemediationEscalation:
		ev.Type = TypeRestartEscalated
		ev.Summary = fmt.Sprintf("Service %s: restarts are not helping on %s; automatic restarts stopped, a person must look", r.Service, r.AgentID)
	default:
		return Event{}, false
	}
	return ev, true
}

// OnRemediation publishes an automatic restart or an escalation
// (remediation.Config.OnEvent).
func (n *Notifier) OnRemediation(ctx context.Context, r store.Remediation) {
	if ev, ok := RemediationEvent(r); ok {
		_ = n.Publish(context.WithoutCancel(ctx), ev)
	}
}
