package notify

import (
	"context"
	"fmt"
	"strings"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

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
	if t == "" {
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
