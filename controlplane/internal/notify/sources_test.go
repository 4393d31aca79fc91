package notify

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/backups"
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

// A stale backup policy reported twice in one episode (by the scheduler of
// one replica, then of the next lease holder) reaches a subscriber once;
// the next episode (a later last success) is another event.
func TestBackupStaleOncePerEpisode(t *testing.T) {
	st, clock := openStore(t), newFakeClock()
	rx := newSink(t)
	subscribe(t, st, "ns-1", store.SinkWebhook, rx.URL, TypeBackupStale)
	n := newTestNotifier(t, st, clock)
	other := newTestNotifier(t, st, clock)
	last := time.Date(2026, 11, 20, 2, 10, 0, 0, time.UTC)
	stale := backups.Stale{Policy: "nightly", Database: "shop", Selector: "role=db", LastSuccess: last,
		Due: last.Add(24*time.Hour - 10*time.Minute), Deadline: last.Add(25*time.Hour - 10*time.Minute), At: clock.Now(),
		LastCommandID: "cmd-abc", LastMessage: "1 of 1 hosts failed; db-1: pg_dump: connection refused"}
	n.OnBackupStale(context.Background(), stale)
	other.OnBackupStale(context.Background(), stale)
	next := stale
	next.LastSuccess, next.LastMessage, next.Running = last.Add(48*time.Hour), "", "cmd-def"
	n.OnBackupStale(context.Background(), next)
	step(t, n) // the first episode's; the second waits behind it (one policy, in order)
	step(t, n)
	step(t, n)
	reqs := rx.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d deliveries, want one per episode (2)", len(reqs))
	}
	b := decode(t, reqs[0].body)
	if b.Type != TypeBackupStale || b.Data.Subject["policy"] != "nightly" ||
		!strings.Contains(b.Data.Summary, "newest successful backup finished 2026-11-20T02:10:00Z") ||
		!strings.Contains(b.Data.Reason, "cmd-abc: 1 of 1 hosts failed") || b.Data.Evidence["due"] != "2026-11-21T02:00:00Z" {
		t.Errorf("first episode's body = %+v", b)
	}
	if b := decode(t, reqs[1].body); !strings.Contains(b.Data.Reason, "run cmd-def is still in progress") || b.ID == decode(t, reqs[0].body).ID {
		t.Errorf("second episode's body = %+v", b)
	}
}

// TestRemediationEvent: an automatic restart and an escalation are
// events with their evidence; an OOM kill is none; an automatic restart's
// rollout announces its failure only.
func TestRemediationEvent(t *testing.T) {
	r := store.Remediation{ID: "rem-ro-1-a1", Service: "web", AgentID: "a1", Action: store.RemediationRestart, Reason: "threshold",
		Evidence: "working set 90.0 MiB above 80.0 MiB for 10s", RolloutID: "ro-1", OccurredAt: at}
	ev, ok := RemediationEvent(r)
	if !ok || ev.Type != TypeAutomaticRestart || ev.ID != "ev-rem-ro-1-a1" || ev.Subject["rollout_id"] != "ro-1" ||
		ev.Evidence["measured"] != r.Evidence || !strings.Contains(ev.Summary, "restarted automatically") {
		t.Errorf("restart: %+v, %v", ev, ok)
	}
	r.Action, r.Reason = store.RemediationEscalation, "restarts are not helping: 2 automatic restarts"
	if ev, ok := RemediationEvent(r); !ok || ev.Type != TypeRestartEscalated || ev.Reason != r.Reason ||
		!strings.Contains(ev.Summary, "restarts are not helping") {
		t.Errorf("escalation: %+v, %v", ev, ok)
	}
	r.Action = store.RemediationOOMKill
	if ev, ok := RemediationEvent(r); ok {
		t.Errorf("OOM kill made an event: %+v", ev)
	}
	sc := rollout.StateChange{RolloutID: "ro-1", Service: "web", At: at, Remediation: true,
		From: flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED, To: flotillav1.RolloutState_ROLLOUT_STATE_RUNNING}
	for to, want := range map[flotillav1.RolloutState]string{
		flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED: "", flotillav1.RolloutState_ROLLOUT_STATE_FAILED: TypeRolloutFailed,
	} {
		sc.To = to
		ev, ok := RolloutEvent(sc)
		if got := map[bool]string{true: ev.Type}[ok]; got != want {
			t.Errorf("automatic restart's rollout %s: event %q, want %q", to, got, want)
		}
	}
}

// An analysis that fails a rollout is an analysis.failed event whose body
// carries the deciding measurement: each query's PromQL, value, threshold
// and verdict (an infinite value as text, which JSON cannot carry).
func TestAnalysisFailedEvidence(t *testing.T) {
	f := rollout.AnalysisFailure{RolloutID: "ro-1", Service: "web", Image: "app:2", Batch: 0, At: at, AutoRollback: true,
		Reason: "analysis failed at batch 1 (1 in a row): error-rate: 0.05 > 0.01",
		Results: []*flotillav1.AnalysisResult{
			{Query: "error-rate", Promql: `sum(rate(http_requests_total{code=~"5.."}[1m]))`, Value: 0.05, Threshold: 0.01,
				Verdict: flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL, Message: "0.05 > 0.01"},
			{Query: "ratio", Promql: "x / 0", Value: math.Inf(1), Threshold: 2,
				Verdict: flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL, Message: "+Inf > 2"},
		}}
	ev := AnalysisEvent(f)
	raw, err := ev.encode()
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Type string `json:"type"`
		Data struct {
			Reason   string            `json:"reason"`
			Subject  map[string]string `json:"subject"`
			Evidence struct {
				Gate         string           `json:"gate"`
				AutoRollback bool             `json:"auto_rollback"`
				Results      []map[string]any `json:"results"`
			} `json:"evidence"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	if b.Type != TypeAnalysisFailed || b.Data.Reason != f.Reason || b.Data.Subject["rollout_id"] != "ro-1" || ev.OrderKey != "ro-1" ||
		b.Data.Evidence.Gate != "batch 1" || !b.Data.Evidence.AutoRollback || len(b.Data.Evidence.Results) != 2 {
		t.Fatalf("body %s", raw)
	}
	first, second := b.Data.Evidence.Results[0], b.Data.Evidence.Results[1]
	if first["query"] != "error-rate" || first["promql"] != f.Results[0].Promql || first["value"] != 0.05 ||
		first["threshold"] != 0.01 || first["verdict"] != "fail" {
		t.Errorf("first result %v", first)
	}
	if second["value"] != "+Inf" {
		t.Errorf("infinite value = %v, want \"+Inf\"", second["value"])
	}
	if bake := AnalysisEvent(rollout.AnalysisFailure{RolloutID: "ro-2", Batch: -1}); !strings.Contains(bake.Summary, "the bake") {
		t.Errorf("bake summary %q", bake.Summary)
	}
}
