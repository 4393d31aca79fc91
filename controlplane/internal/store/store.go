// Package store defines the control plane's persistent state behind one narrow
// interface. The embedded implementation is SQLite (package sqlite); a
// PostgreSQL implementation can satisfy the same interface, so the SQL stays
// portable and every method is one short transaction.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when the requested row does not exist.
var ErrNotFound = errors.New("not found")

// ErrJoinTokenInvalid is returned by RegisterAgent for a join token that is
// unknown, expired, revoked or used up. It deliberately does not say which,
// so that callers cannot leak whether a token exists.
var ErrJoinTokenInvalid = errors.New("join token invalid")

// ErrConflict is returned when a row with the same key already exists.
var ErrConflict = errors.New("already exists")

// Agent states as stored. They mirror flotilla.v1.AgentState without making
// the store depend on the API.
const (
	AgentConnected    = "connected"
	AgentDisconnected = "disconnected"
	AgentLost         = "lost"
)

// Agent is one registered agent.
type Agent struct {
	ID       string
	Hostname string
	// Labels is the effective label set (claimed labels merged with pinned ones).
	Labels map[string]string
	// PinnedLabels came from the join token and always override claims.
	PinnedLabels   map[string]string
	Version        string
	State          string
	StateReason    string
	StateChangedAt time.Time
	RegisteredAt   time.Time
	ConnectedAt    time.Time
	LastSeenAt     time.Time
	PeerAddress    string
	// CertSerial is the serial number (hex) of the agent's current certificate.
	CertSerial   string
	CertNotAfter time.Time
	// JoinTokenID is the token the agent registered with.
	JoinTokenID string
	// Hello is the last hello the agent sent (serialized flotilla.v1.Hello),
	// nil before its first stream.
	Hello []byte
	// LastHeartbeat is the last persisted heartbeat (serialized
	// flotilla.v1.Heartbeat), nil before the first one.
	LastHeartbeat []byte
}

// AgentStatus is a liveness update for one agent. Nil maps and slices mean
// "unchanged"; times and strings are always written, so callers send the
// agent's complete current status, never a partial one.
type AgentStatus struct {
	ID             string
	State          string
	StateReason    string
	StateChangedAt time.Time
	ConnectedAt    time.Time
	LastSeenAt     time.Time
	PeerAddress    string
	Version        string
	Hostname       string
	Labels         map[string]string // nil: unchanged
	Hello          []byte            // nil: unchanged
	LastHeartbeat  []byte            // nil: unchanged
}

// JoinToken lets agents register. Only the SHA-256 of the secret is stored.
type JoinToken struct {
	ID          string
	Hash        []byte
	Description string
	Labels      map[string]string
	MaxUses     int
	Uses        int
	CreatedAt   time.Time
	ExpiresAt   time.Time // required: a join token always expires
	RevokedAt   time.Time // zero when not revoked
}

// APIToken authenticates an operator. Only the SHA-256 of the secret is stored.
type APIToken struct {
	ID        string
	Name      string
	Hash      []byte
	Role      string
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never
	RevokedAt time.Time // zero: not revoked
}

// Store is the control plane's persistent state.
type Store interface {
	// RegisterAgent atomically consumes one use of the join token whose hash
	// is tokenHash and inserts the agent that build returns. build runs inside
	// the transaction with the token as stored (before this use), so it can
	// merge pinned labels and sign the certificate; if build fails nothing is
	// written. A token that is unknown, expired at now, revoked or used up
	// returns ErrJoinTokenInvalid; an agent ID that exists returns ErrConflict.
	// build runs while the store's write lock is held: it must be quick and
	// must not call the store. The store records the consumed token's ID as
	// the agent's JoinTokenID.
	RegisterAgent(ctx context.Context, tokenHash []byte, now time.Time, build func(JoinToken) (Agent, error)) (Agent, error)
	// GetAgent returns one agent or ErrNotFound.
	GetAgent(ctx context.Context, id string) (Agent, error)
	// ListAgents returns every agent, ordered by ID.
	ListAgents(ctx context.Context) ([]Agent, error)
	// UpdateAgentStatuses writes liveness updates in one transaction. Unknown
	// IDs are skipped.
	UpdateAgentStatuses(ctx context.Context, updates []AgentStatus) error

	// CreateJoinToken inserts a join token; an existing ID or hash returns ErrConflict.
	CreateJoinToken(ctx context.Context, t JoinToken) error
	// GetJoinToken returns a token by ID or ErrNotFound.
	GetJoinToken(ctx context.Context, id string) (JoinToken, error)

	// CreateAPIToken inserts an operator token; an existing ID or hash returns ErrConflict.
	CreateAPIToken(ctx context.Context, t APIToken) error
	// GetAPITokenByHash returns the token whose secret hashes to hash, or ErrNotFound.
	GetAPITokenByHash(ctx context.Context, hash []byte) (APIToken, error)
	// CountAPITokens returns how many operator tokens exist (revoked included).
	CountAPITokens(ctx context.Context) (int, error)

	CommandStore

	// Ping checks that the store answers; /healthz reports it as "database".
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// FleetCommand is one command run on a set of hosts (FleetService.RunCommand).
// Its definition is kept as the serialized request, so that the store needs
// no knowledge of command kinds.
type FleetCommand struct {
	ID   string
	Kind string
	// Request is the serialized flotilla.v1.RunCommandRequest as accepted
	// (targets resolved to agent IDs, defaults filled in).
	Request   []byte
	CreatedBy string
	// State is a flotilla.v1.FleetCommandState value.
	State      int32
	CreatedAt  time.Time
	FinishedAt time.Time // zero while running
}

// HostCommand is one command for one agent: the unit the agent journals.
type HostCommand struct {
	// ID is the ID the agent sees; unique across the store.
	ID string
	// FleetCommandID links the command to its fleet command; empty for
	// commands issued by other subsystems (the rollout engine).
	FleetCommandID string
	AgentID        string
	Kind           string
	// Spec is the serialized flotilla.v1.CommandSpec.
	Spec []byte
	// State is a flotilla.v1.CommandState value.
	State   int32
	Message string
	// Result is the serialized flotilla.v1.CommandResult, nil until there is one.
	Result    []byte
	CreatedAt time.Time
	// ReleasedAt is when the command's turn came (its concurrency slot);
	// zero while it is queued. Deadline is set at release.
	ReleasedAt time.Time
	Deadline   time.Time
	SentAt     time.Time
	StartedAt  time.Time
	// FinishedAt is set when the command reached a final state; a command
	// with a zero FinishedAt is active.
	FinishedAt time.Time
}

// FleetCommandQuery selects fleet commands, newest first.
type FleetCommandQuery struct {
	States []int32 // all when empty
	// Before continues a listing after the command with this ID (exclusive).
	Before string
	Limit  int
}

// CommandStore persists commands. It is part of Store.
type CommandStore interface {
	// CreateFleetCommand inserts a fleet command and its host commands in
	// one transaction; an existing ID returns ErrConflict.
	CreateFleetCommand(ctx context.Context, fc FleetCommand, hosts []HostCommand) error
	// GetFleetCommand returns a fleet command or ErrNotFound.
	GetFleetCommand(ctx context.Context, id string) (FleetCommand, error)
	// ListFleetCommands returns fleet commands newest first.
	ListFleetCommands(ctx context.Context, q FleetCommandQuery) ([]FleetCommand, error)
	// UpdateFleetCommand sets a fleet command's state and finish time.
	UpdateFleetCommand(ctx context.Context, id string, state int32, finishedAt time.Time) error
	// CreateHostCommands inserts host commands in one transaction; an
	// existing ID returns ErrConflict and nothing is written.
	CreateHostCommands(ctx context.Context, hosts []HostCommand) error
	// UpdateHostCommands writes the mutable fields (state, message, result
	// and times) of host commands in one transaction.
	UpdateHostCommands(ctx context.Context, hosts []HostCommand) error
	// GetHostCommand returns a host command or ErrNotFound.
	GetHostCommand(ctx context.Context, id string) (HostCommand, error)
	// ListHostCommands returns the host commands of a fleet command, by agent ID.
	ListHostCommands(ctx context.Context, fleetCommandID string) ([]HostCommand, error)
	// ListActiveHostCommands returns every host command not yet finished.
	ListActiveHostCommands(ctx context.Context) ([]HostCommand, error)
}
