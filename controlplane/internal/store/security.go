package store

import (
	"context"
	"time"
)

// IdentityStore manages the credentials the control plane issued: join
// tokens, operator API tokens and agent identities. It is part of Store.
type IdentityStore interface {
	// ListJoinTokens returns every join token, newest first.
	ListJoinTokens(ctx context.Context) ([]JoinToken, error)
	// RevokeJoinToken marks a join token revoked at at and returns it as
	// stored. A token already revoked keeps its first revocation time.
	// An unknown ID returns ErrNotFound.
	RevokeJoinToken(ctx context.Context, id string, at time.Time) (JoinToken, error)

	// ListAPITokens returns every operator token, newest first.
	ListAPITokens(ctx context.Context) ([]APIToken, error)
	// GetAPIToken returns an operator token by ID or ErrNotFound.
	GetAPIToken(ctx context.Context, id string) (APIToken, error)
	// RevokeAPIToken marks an operator token revoked at at and returns it
	// as stored. A token already revoked keeps its first revocation time.
	// An unknown ID returns ErrNotFound.
	RevokeAPIToken(ctx context.Context, id string, at time.Time) (APIToken, error)

	// DeregisterAgent marks an agent deregistered at at with reason and
	// returns it as stored. An agent already deregistered keeps its first
	// deregistration. An unknown ID returns ErrNotFound.
	DeregisterAgent(ctx context.Context, id string, at time.Time, reason string) (Agent, error)
	// UpdateAgentCertificate records the agent's newly issued certificate.
	// An unknown or deregistered agent returns ErrNotFound and nothing is
	// written.
	UpdateAgentCertificate(ctx context.Context, id, serial string, notAfter time.Time) error
}

// AuditEvent is one entry of the audit trail: one mutating call.
type AuditEvent struct {
	// ID is assigned by the store; it increases with every event.
	ID int64
	At time.Time
	// Principal is "token:<id>", "operator-cert:<name>", "agent:<id>" or
	// "anonymous".
	Principal string
	// Role is the caller's role name ("" when it has none).
	Role   string
	Method string
	// Request is the request as JSON with secrets redacted.
	Request string
	Peer    string
	// Code is the gRPC status code name; "" while the call runs (and for
	// ever if the control plane stopped before it finished).
	Code     string
	Message  string
	Duration time.Duration
	// RequestID is the call's request ID (x-request-id), as its log
	// lines and its answer carry it; "" for calls recorded before the
	// store kept it.
	RequestID string
}

// AuditQuery selects audit events, newest first.
type AuditQuery struct {
	Principal string // exact; all when empty
	Method    string // exact full method; all when empty
	RequestID string // exact; all when empty
	// FailedOnly keeps events whose code is set and not "OK".
	FailedOnly bool
	// Since keeps events at or after this time; all when zero.
	Since time.Time
	// BeforeID continues a listing below this ID (exclusive); 0 starts at
	// the newest.
	BeforeID int64
	Limit    int
}

// AuditStore keeps the audit trail. It is part of Store.
type AuditStore interface {
	// AppendAuditEvent inserts e (its ID is ignored) and returns its ID.
	AppendAuditEvent(ctx context.Context, e AuditEvent) (int64, error)
	// FinishAuditEvent records the outcome of the call event id describes.
	// An unknown ID returns ErrNotFound.
	FinishAuditEvent(ctx context.Context, id int64, code, message string, duration time.Duration) error
	// ListAuditEvents returns events newest first.
	ListAuditEvents(ctx context.Context, q AuditQuery) ([]AuditEvent, error)
}
