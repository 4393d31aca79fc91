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

// ErrSchemaTooNew is returned when opening a database migrated by a newer
// binary: this one does not know the newer schema and must not write to it.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary supports")

// ErrUnavailable wraps every error that comes from the database being
// unreachable (connection refused or lost, failover in progress) rather than
// from the request: the caller may retry, and the API answers Unavailable.
var ErrUnavailable = errors.New("store unavailable")

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
	// DeregisteredAt is when an admin deregistered the agent (zero while it
	// is registered). A deregistered agent's certificates are refused for
	// good; the row stays for the audit trail.
	DeregisteredAt   time.Time
	DeregisterReason string
	// PublicKeySHA256 is the SHA-256 (hex) of the public key the agent
	// registered with; "" for agents registered before it was recorded.
	PublicKeySHA256 string
	// StreamHolder is the holder ID of the control-plane replica holding
	// the agent's stream, "" when none does (always "" on SQLite, where
	// one process is the whole control plane).
	StreamHolder string
	// StatusSeq is taken anew, larger than every value before it, by every
	// write of the agent's row (registration, status, deregistration,
	// certificate, loss). Set by the store; ignored by RegisterAgent.
	StatusSeq int64
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
	// StreamHolder is the holder ID of the replica holding the agent's
	// stream after this update ("" none), always written.
	StreamHolder string
	// IfHolder, when not "", makes the update conditional: it is skipped
	// unless the stored stream_holder is IfHolder, so that a replica's
	// late write (a detach, a heartbeat) never overwrites another
	// replica's newer attachment. "" writes unconditionally (an attach,
	// or one control plane on SQLite).
	IfHolder string
	// Attach marks the write of an agent's new stream (replica mode):
	// UpdateAgentStatuses reports whether it brought the agent back from
	// lost, so that exactly one replica tells that it is back.
	Attach bool
}

// AgentLoss asks MarkAgentsLost to mark one agent lost, only if its row is
// still the one the decision was made on.
type AgentLoss struct {
	ID string
	// StatusSeq is the agent's status_seq as read when deciding.
	StatusSeq int64
	// Reason becomes the agent's state reason.
	Reason string
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
	// CreatedBy is the principal that created the token ("" for the
	// bootstrap token).
	CreatedBy string
}

// Store is the control plane's persistent state: every role below, as one
// driver (SQLite or PostgreSQL) implements it. Consumers take the narrow role
// interface they use, never the whole Store.
type Store interface {
	AgentStore
	TokenStore
	CommandStore
	RolloutStore
	IdentityStore
	AuditStore
	LeaseStore
	BackupStore
	NotificationStore
	RemediationStore

	// Ping checks that the store answers; /healthz reports it as "database".
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// AgentStore persists the registered agents. It is part of Store.
type AgentStore interface {
	// RegisterAgent atomically consumes one use of the join token whose hash
	// is tokenHash and inserts the agent that build returns. build runs inside
	// the transaction with the token as stored (before this use), so it can
	// merge pinned labels and sign the certificate; if build fails nothing is
	// written. A token that is unknown, expired at now, revoked or used up
	// returns ErrJoinTokenInvalid; an agent ID that exists returns ErrConflict.
	// build runs while the store's write lock is held: it must be quick and
	// must not call the store. The store records the consumed token's ID as
	// the agent's JoinTokenID.
	// An agent whose PublicKeySHA256 is already registered with the same
	// token (and not deregistered) returns ErrConflict too.
	RegisterAgent(ctx context.Context, tokenHash []byte, now time.Time, build func(JoinToken) (Agent, error)) (Agent, error)
	// RegisteredWithKey returns the registered (not deregistered) agent that
	// used the token whose hash is tokenHash with the public key whose
	// SHA-256 (hex) is keySHA256: a Register retried after its answer was
	// lost. The token must not be expired at now or revoked
	// (ErrJoinTokenInvalid) but may be used up; no such agent is
	// ErrNotFound.
	RegisteredWithKey(ctx context.Context, tokenHash []byte, keySHA256 string, now time.Time) (Agent, error)
	// GetAgent returns one agent or ErrNotFound.
	GetAgent(ctx context.Context, id string) (Agent, error)
	// ListAgents returns every agent, ordered by ID.
	ListAgents(ctx context.Context) ([]Agent, error)
	// UpdateAgentStatuses writes liveness updates in one transaction. Unknown
	// IDs are skipped, and so are updates whose IfHolder is not the stored
	// stream holder. Each row written takes a new StatusSeq. back lists the
	// agents of Attach updates written connected over a stored state of
	// lost (read and written in the transaction, the row locked between):
	// of several replicas writing an agent's return, one learns it.
	UpdateAgentStatuses(ctx context.Context, updates []AgentStatus) (back []string, err error)
	// ListAgentsChanged returns at most limit agents (deregistered ones
	// included) whose StatusSeq is above afterSeq, ordered by StatusSeq.
	// On PostgreSQL a write that commits late may carry a StatusSeq below
	// one already returned: readers re-read a window behind their cursor.
	ListAgentsChanged(ctx context.Context, afterSeq int64, limit int) ([]Agent, error)
	// MarkAgentsLost marks each agent of losses lost (state lost, the
	// loss's reason, state changed at now, no stream holder, a new
	// StatusSeq) only if its StatusSeq is still the loss's, it is not
	// lost already and not deregistered: a write made meanwhile (a
	// reconnect to another replica) wins. It returns the IDs it marked.
	MarkAgentsLost(ctx context.Context, losses []AgentLoss, now time.Time) ([]string, error)
}

// TokenStore persists join tokens and operator (API) tokens. It is part of Store.
type TokenStore interface {
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
	// Summary is a JSON object of host counts by state, written when the
	// command finishes ("" while it runs).
	Summary string
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
	// CancelReason is set once a cancel was requested ("" until then), so
	// that whichever control plane holds the agent's stream delivers it;
	// it is never withdrawn.
	CancelReason string
	// ChangeSeq is set by the store on every insert and update from one
	// increasing sequence: commands changed after seq N are those with a
	// ChangeSeq above N (ListHostCommandChanges). Ignored when written.
	ChangeSeq int64
}

// CommandReport is an event an agent sent about one of its commands to a
// control plane that does not drive the command, kept for the one that
// does (several control planes on one database).
type CommandReport struct {
	// Seq is set by the store from one increasing sequence; ignored when
	// written.
	Seq       int64
	CommandID string
	AgentID   string
	// Event is the serialized flotilla.v1.CommandEvent.
	Event      []byte
	ReceivedAt time.Time
}

// CommandEvent is one event of a fleet command's host command as the
// replica driving the command made it (several control planes on one
// database): kept so that a watcher on any replica sees every event, in
// order, whichever replica produced it.
type CommandEvent struct {
	// Seq is set by the store from one increasing sequence, in commit
	// order; ignored when written.
	Seq            int64
	FleetCommandID string
	AgentID        string
	// CommandID is the host command's ID: not stored, it names the fence
	// the event is written under (UpdateHostCommands' fences).
	CommandID string
	// Event is the serialized flotilla.v1.CommandEvent.
	Event     []byte
	CreatedAt time.Time
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
	// UpdateFleetCommand sets a fleet command's state, finish time and
	// summary. With a fence, it writes only while the fence's lease holds
	// (checked in the write's transaction), else returns ErrFenced and
	// writes nothing; a nil fence writes unconditionally.
	UpdateFleetCommand(ctx context.Context, id string, state int32, finishedAt time.Time, summary string, fence *Fence) error
	// CreateHostCommands inserts host commands in one transaction; an
	// existing ID returns ErrConflict and nothing is written.
	CreateHostCommands(ctx context.Context, hosts []HostCommand) error
	// UpdateHostCommands writes the mutable fields (state, message, result,
	// times and cancel reason) of host commands in one transaction. A
	// cancel reason once stored is kept: an empty one leaves it. A host
	// command with a fence in fences (by its ID) is written only while
	// that fence's lease holds, checked in the write's transaction, as
	// UpdateFleetCommand does: when one of the fences no longer holds,
	// nothing is written and the error is a *FencedError naming it (it
	// wraps ErrFenced). Commands without a fence (nil fences: all of
	// them) are written unconditionally. events are appended in the same
	// transaction, in order (there may be events and no hosts: progress),
	// each under the fence of its CommandID as a host is.
	UpdateHostCommands(ctx context.Context, hosts []HostCommand, fences map[string]*Fence, events []CommandEvent) error
	// ReadFleetCommand returns a fleet command, its host commands (by
	// agent ID) and the seq of its last event (0: none), read at one
	// instant: the command's events after that seq are exactly the
	// changes its hosts do not show yet. An unknown ID is ErrNotFound.
	ReadFleetCommand(ctx context.Context, id string) (FleetCommand, []HostCommand, int64, error)
	// ListCommandEvents returns at most limit events of a fleet command
	// after afterSeq, by seq. Once an event with seq N was returned, no
	// event committed later gets a seq at or below N.
	ListCommandEvents(ctx context.Context, fleetCommandID string, afterSeq int64, limit int) ([]CommandEvent, error)
	// PruneCommandEvents deletes the events of fleet commands finished
	// before finishedBefore, or gone, and returns how many.
	PruneCommandEvents(ctx context.Context, finishedBefore time.Time) (int64, error)
	// GetHostCommand returns a host command or ErrNotFound.
	GetHostCommand(ctx context.Context, id string) (HostCommand, error)
	// ListHostCommands returns the host commands of a fleet command, by agent ID.
	ListHostCommands(ctx context.Context, fleetCommandID string) ([]HostCommand, error)
	// ListActiveHostCommands returns every host command not yet finished.
	ListActiveHostCommands(ctx context.Context) ([]HostCommand, error)
	// ListAgentActiveHostCommands returns an agent's released, unfinished
	// host commands, oldest first.
	ListAgentActiveHostCommands(ctx context.Context, agentID string) ([]HostCommand, error)
	// ListHostCommandChanges returns at most limit host commands whose
	// ChangeSeq is above afterSeq, by ChangeSeq. A command changed several
	// times appears once, as it is now. Once a command with seq N was
	// returned, no command committed later gets a seq at or below N.
	ListHostCommandChanges(ctx context.Context, afterSeq int64, limit int) ([]HostCommand, error)
	// LastHostCommandChange returns the highest change seq of the host
	// commands (0 when there are none): where a reader that wants only
	// the changes from now on starts.
	LastHostCommandChange(ctx context.Context) (int64, error)
	// AddCommandReports appends reports in one transaction, in order.
	AddCommandReports(ctx context.Context, reports []CommandReport) error
	// ListCommandReports returns at most limit reports whose Seq is above
	// afterSeq, by Seq, with the same ordering guarantee as
	// ListHostCommandChanges.
	ListCommandReports(ctx context.Context, afterSeq int64, limit int) ([]CommandReport, error)
	// ListCommandReportsFor returns the reports about the given commands,
	// by Seq.
	ListCommandReportsFor(ctx context.Context, commandIDs []string) ([]CommandReport, error)
	// PruneCommandReports deletes the reports of commands that finished
	// before finishedBefore or no longer exist, and returns how many.
	PruneCommandReports(ctx context.Context, finishedBefore time.Time) (int64, error)
}

// Service is a deployable application (RolloutService.PutService). Its
// definition is kept as the serialized flotilla.v1.Service, so that the
// store needs no knowledge of strategies or load balancers.
type Service struct {
	Name string
	// Spec is the serialized flotilla.v1.Service as accepted (defaults
	// filled in; times and current image are not part of it).
	Spec      []byte
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Rollout is one rollout of a service to an image: its plan, which never
// changes once stored, and its progress, which the rollout engine moves.
type Rollout struct {
	ID      string
	Service string
	Image   string
	// RollbackOf is the rollout this one undoes (RollbackService), if any.
	RollbackOf string
	CreatedBy  string
	// Definition is the serialized flotilla.v1.Rollout as planned: strategy
	// with defaults, selector, reason, batches and excluded hosts, without
	// hosts and without the mutable fields below.
	Definition []byte
	// ServiceSpec is the serialized flotilla.v1.Service as it was at the
	// start: a rollout keeps its container and load balancer even if the
	// service is changed while it runs.
	ServiceSpec []byte
	// LoadBalancers are the agent IDs of the load balancers resolved at the
	// start, sorted.
	LoadBalancers []string

	// State is a flotilla.v1.RolloutState value.
	State   int32
	Message string
	// CurrentBatch is the batch being worked on (during a rollback, the
	// batch being rolled back).
	CurrentBatch int
	// Prepared is set once the image was pulled on every host.
	Prepared bool
	// BatchStartedAt is when the current batch started; zero before.
	BatchStartedAt time.Time
	// BatchFinishedAt is when the previous batch finished (the pause
	// between batches counts from it).
	BatchFinishedAt time.Time
	// Stop says why the rollout stopped starting hosts (max_failures, an
	// abort); empty while it goes on.
	Stop string
	// StopRollback asks for the changed hosts to be rolled back once no
	// host is in progress any more.
	StopRollback bool
	// StopState is the final state when the rollout stops without a
	// rollback (FAILED or ABORTED).
	StopState int32
	CreatedAt time.Time
	// FinishedAt is set with a final state; a rollout with a zero
	// FinishedAt is active, and a service has at most one active rollout.
	FinishedAt time.Time
	// BakeUntil is the end of the rollout's bake (BAKING); zero before it
	// started or without one.
	BakeUntil time.Time
	// Analysis is the serialized flotilla.v1.AnalysisStatus of the
	// rollout's analysis in progress (consecutive results, next
	// measurement, latest results); nil without analysis.
	Analysis []byte
	// ResumeAt is when a rollout PAUSED by a deploy window's end resumes
	// by itself (the next window's start); zero otherwise.
	ResumeAt time.Time
}

// RolloutHost is one host of a rollout.
type RolloutHost struct {
	RolloutID string
	AgentID   string
	Batch     int
	// Step is a flotilla.v1.HostStep value.
	Step        int32
	RollingBack bool
	// PreviousImage is the image the host ran before the rollout's
	// restart (from the restart's result).
	PreviousImage string
	Message       string
	StartedAt     time.Time
	FinishedAt    time.Time
	// StepStartedAt is when the host entered its current step.
	StepStartedAt time.Time
	// ObservedImage is the image the host reported when the rollout was
	// planned; the rollback falls back to it when a restart's result
	// carries no previous image.
	ObservedImage string
	// Server is the host's upstream server (address:port) in the load
	// balancers; empty without a load balancer.
	Server string
	// Changed is set once a restart to the new image succeeded: the host is
	// then rolled back with the rollout.
	Changed bool
	// WaitingOffline is set for a host that was offline at the start under
	// the WAIT policy, until it comes back.
	WaitingOffline bool
	// Failure is why the host failed, kept while it is being put back into
	// the load balancer (after a failed drain or restart).
	Failure string
	// HealthySince is when the host's current healthy streak began in its
	// health gate (the first healthy heartbeat after the restart, since
	// the last unhealthy one); zero while none, or out of the gate.
	HealthySince time.Time
}

// RolloutEvent is one entry of a rollout's history.
type RolloutEvent struct {
	RolloutID string
	// Sequence numbers start at 1 and increase by one per event of a
	// rollout; the store assigns them.
	Sequence int64
	At       time.Time
	// Event is the serialized flotilla.v1.RolloutEvent (its sequence and
	// time are the columns above).
	Event []byte
}

// RolloutQuery selects rollouts, newest first.
type RolloutQuery struct {
	// Service keeps only this service's rollouts; all when empty.
	Service string
	States  []int32 // all when empty
	// Active keeps only rollouts without a final state.
	Active bool
	// Before continues a listing after the rollout with this ID (exclusive).
	Before string
	Limit  int
}

// RolloutUpdate is one transition of a rollout, written in one transaction:
// its new progress, its hosts' new steps, the events that describe them and
// the host commands that carry them out, so that a command never exists
// without the step that explains it.
type RolloutUpdate struct {
	RolloutID string
	// Rollout is the rollout's new progress; nil leaves the row as is. Only
	// the mutable fields (state to finished time) are written.
	Rollout *Rollout
	// Hosts are written whole (by rollout and agent ID).
	Hosts []RolloutHost
	// Events are appended with the next sequence numbers.
	Events []RolloutEvent
	// Commands are created; an existing ID returns ErrConflict and nothing
	// is written.
	Commands []HostCommand
	// Fence is the lease the transition is written under (the rollout's
	// lease, "rollout/<id>", of the replica driving it): checked first in
	// the write's transaction, and a fence that no longer holds returns
	// ErrFenced with nothing written. Nil writes unconditionally (one
	// control plane on SQLite).
	Fence *Fence
}

// RolloutControl is an operator's request on a rollout (pause, resume,
// abort) made on a replica that does not drive it: stored for the replica
// holding the rollout's lease, which applies it and stores the answer.
type RolloutControl struct {
	// Seq is assigned by the store, increasing with every request.
	Seq       int64
	RolloutID string
	// Op is "pause", "resume" or "abort".
	Op     string
	Reason string
	// Rollback asks an abort to roll the changed hosts back.
	Rollback    bool
	RequestedAt time.Time
	// AnsweredAt is set once the driving replica applied or refused the
	// request; zero while it is pending.
	AnsweredAt time.Time
	// Code is the answer's gRPC status code: 0 when applied.
	Code int32
	// Answer is the refusal's message; "" when applied.
	Answer string
}

// ActiveRolloutError is returned by CreateRollout when the service already
// has an active rollout. It wraps ErrConflict.
type ActiveRolloutError struct {
	Service   string
	RolloutID string
}

func (e *ActiveRolloutError) Error() string {
	return "service " + e.Service + " already has an active rollout: " + e.RolloutID
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ActiveRolloutError) Unwrap() error { return ErrConflict }

// ErrRolloutFinished is returned by UpdateRollout for a rollout that already
// has a final state: nothing may move it any more.
var ErrRolloutFinished = errors.New("rollout already finished")

// RolloutStore persists services and rollouts. It is part of Store.
type RolloutStore interface {
	// PutService creates or replaces a service; CreatedAt is kept when the
	// service exists. It returns the service as stored.
	PutService(ctx context.Context, s Service) (Service, error)
	// GetService returns a service or ErrNotFound.
	GetService(ctx context.Context, name string) (Service, error)
	// ListServices returns every service by name.
	ListServices(ctx context.Context) ([]Service, error)

	// CreateRollout inserts a rollout with its hosts and first events in
	// one transaction. A service with an active rollout returns an
	// *ActiveRolloutError; an existing ID returns ErrConflict. It returns
	// the events with their sequence numbers.
	CreateRollout(ctx context.Context, r Rollout, hosts []RolloutHost, events []RolloutEvent) ([]RolloutEvent, error)
	// GetRollout returns a rollout or ErrNotFound.
	GetRollout(ctx context.Context, id string) (Rollout, error)
	// ListRollouts returns rollouts newest first.
	ListRollouts(ctx context.Context, q RolloutQuery) ([]Rollout, error)
	// ListRolloutHosts returns a rollout's hosts by batch, then agent ID.
	ListRolloutHosts(ctx context.Context, rolloutID string) ([]RolloutHost, error)
	// ListRolloutEvents returns a rollout's events with a sequence above
	// after, in order, at most limit of them (all when limit is 0).
	ListRolloutEvents(ctx context.Context, rolloutID string, after int64, limit int) ([]RolloutEvent, error)
	// UpdateRollout writes one transition (see RolloutUpdate) and returns
	// the appended events with their sequence numbers. A rollout already
	// finished returns ErrRolloutFinished and nothing is written.
	UpdateRollout(ctx context.Context, u RolloutUpdate) ([]RolloutEvent, error)

	// CreateRolloutControl stores an operator's request (its Seq, answer
	// and AnsweredAt are ignored) and returns it with its Seq. An unknown
	// rollout returns ErrNotFound.
	CreateRolloutControl(ctx context.Context, c RolloutControl) (RolloutControl, error)
	// GetRolloutControl returns a request or ErrNotFound.
	GetRolloutControl(ctx context.Context, seq int64) (RolloutControl, error)
	// ListPendingRolloutControls returns a rollout's requests not yet
	// answered, by Seq.
	ListPendingRolloutControls(ctx context.Context, rolloutID string) ([]RolloutControl, error)
	// AnswerRolloutControl stores the answer to a pending request (c's Seq,
	// AnsweredAt, Code and Answer) under fence, checked as UpdateRollout
	// does (ErrFenced). A request already answered keeps its first answer
	// and returns ErrConflict; an unknown one returns ErrNotFound.
	AnswerRolloutControl(ctx context.Context, c RolloutControl, fence *Fence) error
}

// ErrLeaseHeld is returned by AcquireLease while another holder's lease has
// not expired, and by RenewLease once the lease moved to another holder.
var ErrLeaseHeld = errors.New("lease held by another holder")

// Lease is the right of one holder (one control-plane process) to drive a
// piece of work until ExpiresAt. Times come from the database's clock, never
// the holder's. Token increases every time the lease changes holder (a
// fencing token): a write made under an older token is refused.
type Lease struct {
	Name      string
	Holder    string
	Token     int64
	ExpiresAt time.Time
}

// LeaseStore keeps leases. It is part of Store. Holders must be unique per
// process start (host, PID and a random part, say): the token only moves
// when the holder changes. A lease row is never deleted, so tokens never
// repeat.
type LeaseStore interface {
	// AcquireLease takes the lease name for holder for ttl, when it is
	// free, expired or already held by holder (then it is renewed and keeps
	// its token). Another holder's live lease returns an error wrapping
	// ErrLeaseHeld together with that lease (see LeaseHeldError).
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error)
	// RenewLease extends holder's lease by ttl from the database's now. A
	// lease that expired and was taken by another holder, or whose token is
	// not token, returns ErrLeaseHeld: the caller has lost it.
	RenewLease(ctx context.Context, name, holder string, token int64, ttl time.Duration) (Lease, error)
	// ReleaseLease gives the lease up at once if holder still holds it with
	// token; otherwise it does nothing.
	ReleaseLease(ctx context.Context, name, holder string, token int64) error
	// LiveLeases returns the leases whose name starts with prefix and that
	// have not expired by the database's clock, ordered by name.
	LiveLeases(ctx context.Context, prefix string) ([]Lease, error)
}

// LeaseHeldError says who holds a lease that could not be acquired. It wraps
// ErrLeaseHeld.
type LeaseHeldError struct {
	Lease Lease
}

func (e *LeaseHeldError) Error() string {
	return "lease " + e.Lease.Name + " is held by " + e.Lease.Holder + " until " + e.Lease.ExpiresAt.UTC().Format(time.RFC3339)
}

// Unwrap makes errors.Is(err, ErrLeaseHeld) hold.
func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }
