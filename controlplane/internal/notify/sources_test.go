package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/rollout"
	"flotilla.dev/controlplane/internal/store"
)

var at = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestRolloutEvent(t *testing.T) {
	base := rollout.StateChange{RolloutID: "ro-1", Service: "web", Image: "app:2", At: at, Hosts: 4, Batches: 2}
	tests := []struct {
		from, to flotillav1.RolloutState
		want     string
	}{
		{flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED, flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, TypeRolloutStarted},
		{flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, ""},
		{flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED, TypeRolloutPaused},
		{flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED, TypeRolloutSucceeded},
		{flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, flotillav1.RolloutState_ROLLOUT_STATE_FAILED, TypeRolloutFailed},
		{flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, flotillav1.RolloutState_ROLLOUT_STATE_ABORTED, TypeRolloutFailed},
		{flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, flotillav1.RolloutState_ROLLOUT_STATE_ROLLING_BACK, ""},
		{flotillav1.RolloutState_ROLLOUT_STATE_ROLLING_BACK, flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, TypeRolloutRolledBack},
		{flotillav1.RolloutState_ROLLOUT_STATE_ROLLING_BACK, flotillav1.RolloutState_ROLLOUT_STATE_ROLLBACK_FAILED, TypeRolloutFailed},
	}
	for _, tt := range tests {
		sc := base
		sc.From, sc.To = tt.from, tt.to
		ev, ok := RolloutEvent(sc)
		if got := map[bool]string{true: ev.Type}[ok]; got != tt.want {
			t.Errorf("%s → %s: event %q, want %q", tt.from, tt.to, got, tt.want)
		}
	}
}

// A failed rollout's event carries the reason and, as evidence, the failed
// hosts with the gate's verdict.
func TestRolloutFailedEvidence(t *testing.T) {
	sc := rollout.StateChange{
		RolloutID: "ro-1", Service: "web", Image: "app:2", At: at, From: flotillav1.RolloutState_ROLLOUT_STATE_RUNNING,
		To: flotillav1.RolloutState_ROLLOUT_STATE_FAILED, Message: "max_failures reached: 1 of 1 allowed", Hosts: 3, Batches: 2,
		FailedHosts: []rollout.FailedHost{{AgentID: "web-2", Step: flotillav1.HostStep_HOST_STEP_FAILED,
			Message: "health gate failed: status unhealthy (database: down) for 30s"}},
	}
	ev, _ := RolloutEvent(sc)
	raw, err := ev.encode()
	if err != nil {
		t.Fatal(err)
	}
	var b Body
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	if b.Version != 1 || b.Type != TypeRolloutFailed || b.ID != ev.ID || !b.Timestamp.Equal(at) || b.Data.Reason != sc.Message ||
		b.Data.Subject["rollout_id"] != "ro-1" || ev.OrderKey != "ro-1" {
		t.Fatalf("body %s", raw)
	}
	if !strings.Contains(string(raw), `"failed_hosts":[{"agent_id":"web-2","message":"health gate failed: status unhealthy (database: down) for 30s","step":"failed"}]`) {
		t.Fatalf("body %s lacks the failed host's evidence", raw)
	}
}

func TestAgentEvent(t *testing.T) {
	tests := []struct {
		from, to, want string
	}{
		{store.AgentConnected, store.AgentLost, TypeAgentLost},
		{"", store.AgentLost, TypeAgentLost},
		{store.AgentLost, store.AgentConnected, TypeAgentBack},
		{store.AgentConnected, store.AgentDisconnected, ""},
		{store.AgentDisconnected, store.AgentConnected, ""},
	}
	for _, tt := range tests {
		ev, ok := AgentEvent(fleet.StateChange{AgentID: "a-1", Hostname: "web-1", From: tt.from, To: tt.to, Reason: "no heartbeat", At: at})
		if got := map[bool]string{true: ev.Type}[ok]; got != tt.want {
			t.Errorf("%q → %q: event %q, want %q", tt.from, tt.to, got, tt.want)
		}
		if ok && (ev.Summary != "Agent web-1 (a-1) is "+strings.TrimPrefix(tt.want, "agent.") || ev.OrderKey != "a-1") {
			t.Errorf("event %+v", ev)
		}
	}
}

func TestCommandEvent(t *testing.T) {
	failed := flotillav1.FleetCommandState_FLEET_COMMAND_STATE_FAILED
	tests := []struct {
		kind  string
		state flotillav1.FleetCommandState
		want  string
	}{
		{"restart", failed, TypeCommandFailed},
		{"backup", failed, TypeBackupFailed},
		{"base_backup", failed, TypeBackupFailed},
		{"drill", failed, TypeDrillFailed},
		{"backup", flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED, ""},
		{"restart", flotillav1.FleetCommandState_FLEET_COMMAND_STATE_CANCELLED, ""},
	}
	for _, tt := range tests {
		f := commands.Finished{ID: "fc-1", Kind: tt.kind, State: tt.state, At: at, Counts: map[string]int32{"succeeded": 2, "failed": 1},
			Failed: []commands.FailedHost{{AgentID: "db-1", State: flotillav1.CommandState_COMMAND_STATE_FAILED, Message: "pg_dump: connection refused"}}}
		ev, ok := CommandEvent(f)
		if got := map[bool]string{true: ev.Type}[ok]; got != tt.want {
			t.Errorf("%s %s: event %q, want %q", tt.kind, tt.state, got, tt.want)
		}
		if ok && (ev.Reason != "db-1: pg_dump: connection refused" || !strings.Contains(ev.Summary, "failed on 1 of 3 hosts")) {
			t.Errorf("event %+v", ev)
		}
	}
}

func TestSlackEscapesAndLimits(t *testing.T) {
	var ds []store.Delivery
	for i := range maxSlackEvents + 3 {
		raw, _ := Event{ID: "ev", Type: TypeAgentLost, Summary: "<b>&", OccurredAt: at.Add(time.Duration(i))}.encode()
		ds = append(ds, store.Delivery{EventID: "ev", Body: raw})
	}
	raw, err := renderSlack(ds)
	if err != nil {
		t.Fatal(err)
	}
	m := readSlack(t, raw)
	if len(m.Blocks) != 1+2*maxSlackEvents+1 || m.Blocks[1].Text.Text != ":rotating_light: *&lt;b&gt;&amp;*" ||
		m.Blocks[len(m.Blocks)-1].Elements[0].Text != "…and 3 more events" {
		t.Fatalf("message %s", raw)
	}
}
