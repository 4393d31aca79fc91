package store

import (
	"context"
	"time"
)

// The actions a remediation event records (flotilla.v1.RemediationAction).
const (
	RemediationRestart    = "restart"
	RemediationEscalation = "escalation"
	RemediationOOMKill    = "oom_kill"
)

// Remediation is one event of a service's memory remediation: an
// automatic restart of a host's container, an escalation of the guard
// rails, or an OOM kill seen. The restarts are what the hourly guard counts,
// so that a restart of the control plane (or another replica taking the
// driver's lease over) does not forget them.
type Remediation struct {
	ID      string
	Service string
	AgentID string
	// Action is RemediationRestart, RemediationEscalation or
	// RemediationOOMKill.
	Action string
	// Reason is the trigger ("threshold", "growth"), or the guard rail that
	// stopped a restart.
	Reason   string
	Evidence string
	// RolloutID is the restart's rollout (restarts only).
	RolloutID  string
	OccurredAt time.Time
}

// RemediationQuery selects remediation events, newest first.
type RemediationQuery struct {
	// Service and AgentID filter when set.
	Service, AgentID string
	// Action filters when set.
	Action string
	// Since keeps the events at or after it when set.
	Since time.Time
	// Limit bounds the events (all when 0).
	Limit int
}

// RemediationStore keeps the remediation events. It is part of Store.
type RemediationStore interface {
	// AddRemediation stores an event under fence (the remediation driver's
	// lease; ErrFenced with nothing written once it moved; nil writes
	// unconditionally). An event whose ID is stored already is left as it
	// is and reported by added false, so that a retried write is harmless.
	AddRemediation(ctx context.Context, r Remediation, fence *Fence) (added bool, err error)
	// DeleteRemediation removes an event under fence (a restart whose
	// rollout could not be started); an unknown ID is not an error.
	DeleteRemediation(ctx context.Context, id string, fence *Fence) error
	// ListRemediations returns the events q selects, newest first.
	ListRemediations(ctx context.Context, q RemediationQuery) ([]Remediation, error)
}
