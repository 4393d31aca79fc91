package notify

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event types, as subscriptions name them and bodies carry them.
const (
	TypeRolloutStarted    = "rollout.started"
	TypeRolloutPaused     = "rollout.paused"
	TypeRolloutSucceeded  = "rollout.succeeded"
	TypeRolloutFailed     = "rollout.failed"
	TypeRolloutRolledBack = "rollout.rolled_back"
	// TypeAnalysisFailed: a rollout's analysis failed it; the evidence
	// holds each query's PromQL, value, threshold and verdict.
	TypeAnalysisFailed = "analysis.failed"
	TypeAgentLost      = "agent.lost"
	TypeAgentBack      = "agent.back"
	TypeCommandFailed  = "command.failed"
	TypeBackupFailed   = "backup.failed"
	// TypeBackupStale: a backup policy's newest successful backup is older
	// than its schedule allows (the backup scheduler, once per episode).
	TypeBackupStale = "backup.stale"
	TypeDrillFailed = "drill.failed"
	// TypeAutomaticRestart: a remediation policy restarted a container.
	TypeAutomaticRestart = "restart.automatic"
	// TypeRestartEscalated: the guard rails stopped an automatic restart
	// the policy asked for; restarts are not helping.
	TypeRestartEscalated = "restart.escalated"
	// TypeTest is the event TestSubscription sends; no filter names it.
	TypeTest = "test"
)

// Types lists every type a subscription may ask for, in the API's order.
var Types = []string{
	TypeRolloutStarted, TypeRolloutPaused, TypeRolloutSucceeded, TypeRolloutFailed, TypeRolloutRolledBack,
	TypeAnalysisFailed, TypeAgentLost, TypeAgentBack, TypeCommandFailed, TypeBackupFailed, TypeBackupStale,
	TypeDrillFailed, TypeAutomaticRestart, TypeRestartEscalated,
}

// BodyVersion is the version of the JSON body webhooks receive; a change
// that is not an addition gets a new version.
const BodyVersion = 1

// Event is something that happened in the fleet, as sources publish it.
type Event struct {
	// ID is the idempotency key (webhook-id); a source that may publish
	// the same happening twice gives it the same ID. Empty: one is made.
	ID   string
	Type string
	// OrderKey groups the events a webhook receives in order (a
	// rollout's ID); empty: no order.
	OrderKey   string
	OccurredAt time.Time
	// Summary is one line for people ("rollout ro-1 of web failed").
	Summary string
	// Reason is why, as the subsystem said it.
	Reason string
	// Subject names what the event is about: rollout_id, service,
	// agent_id, hostname, command_id...
	Subject map[string]string
	// Evidence is what supports the reason, e.g. the failed gate and its
	// value, or the failed hosts with their messages.
	Evidence map[string]any
}

// Body is the JSON a webhook receives (version BodyVersion): the Standard
// Webhooks shape, type, timestamp and data.
type Body struct {
	// Version is BodyVersion.
	Version int `json:"version"`
	// ID is the event's ID, the same as the webhook-id header.
	ID string `json:"id"`
	// Type is the event type, e.g. "rollout.failed".
	Type string `json:"type"`
	// Timestamp is when the event occurred (RFC 3339, UTC).
	Timestamp time.Time `json:"timestamp"`
	// Data is the event's content.
	Data BodyData `json:"data"`
}

// BodyData is the event's content.
type BodyData struct {
	// Summary is one line for people.
	Summary string `json:"summary"`
	// Reason is why, as the subsystem said it.
	Reason string `json:"reason,omitempty"`
	// Subject names what the event is about (rollout_id, service,
	// agent_id, hostname, command_id, ...).
	Subject map[string]string `json:"subject,omitempty"`
	// Evidence supports the reason (failed hosts and their messages,
	// host counts by state, ...).
	Evidence map[string]any `json:"evidence,omitempty"`
}

// encode renders the event's body.
func (ev Event) encode() ([]byte, error) {
	b, err := json.Marshal(Body{
		Version: BodyVersion, ID: ev.ID, Type: ev.Type, Timestamp: ev.OccurredAt.UTC(),
		Data: BodyData{Summary: ev.Summary, Reason: ev.Reason, Subject: ev.Subject, Evidence: ev.Evidence},
	})
	if err != nil {
		return nil, fmt.Errorf("notify: event %s (%s): evidence not representable as JSON: %w", ev.ID, ev.Type, err)
	}
	return b, nil
}

// decodeBody reads a stored body back (Slack renders from it).
func decodeBody(raw []byte) (Body, error) {
	var b Body
	if err := json.Unmarshal(raw, &b); err != nil {
		return b, fmt.Errorf("notify: stored event body unreadable: %w", err)
	}
	return b, nil
}
