package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// Config configures a Registry.
type Config struct {
	Store  store.AgentStore
	Logger *zap.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// LostAfter is how long an agent may go without a stream and without a
	// heartbeat before it is lost (default 12s: two missed heartbeats at the
	// agent's default 5s interval, plus 2s).
	LostAfter time.Duration
	// ReconnectGrace is how long after this process started an agent that
	// has not been heard from since may take to come back before it is lost
	// (default 60s; never less than LostAfter). A restart of the control
	// plane drops every stream at once, and a large fleet needs longer than
	// LostAfter to reconnect; without the grace, hosts that are merely
	// waiting for their turn would be declared lost and fail rollouts.
	ReconnectGrace time.Duration
	// PersistInterval is how often an unchanged heartbeat is still written to
	// the store, so that a restarted control plane shows recent readings
	// (default 1m). Changes in health or containers are written at once.
	PersistInterval time.Duration
	// FlushInterval is how often pending status changes are written to the
	// store in one batch (default 1s).
	FlushInterval time.Duration

	// OnStateChange, when set, is told every change of an agent's state
	// this process makes (connected, disconnected, lost). It is called
	// with the registry's lock held: it must not block nor call the
	// registry (notifications queue the change and return).
	OnStateChange func(StateChange)

	// Replica is set when this process is one of several control-plane
	// replicas on one store (PostgreSQL); zero for one process (SQLite),
	// which is then the whole fleet's only view.
	Replica Replica
}

// Defaults of Config.
const (
	DefaultLostAfter      = 12 * time.Second
	DefaultReconnectGrace = time.Minute
)

// ErrUnknownAgent is returned for an agent ID the registry does not hold.
var ErrUnknownAgent = errors.New("unknown agent")

// Registry is the live fleet.
type Registry struct {
	cfg Config
	log *zap.Logger

	mu     sync.RWMutex
	agents map[string]*entry
	ids    []string // sorted, for paging
	dirty  map[string]struct{}
	// startedAt is when the registry loaded; agents that were connected to a
	// previous control-plane process get until startedAt+ReconnectGrace to
	// reconnect before they count as lost.
	startedAt time.Time

	heartbeats uint64 // total heartbeats accepted, for metrics
	rebalanced rebalanced
	// shed: when this replica last closed each agent's stream to
	// rebalance (see shedRecently). Guarded by mu.
	shed map[string]time.Time

	// view is the state of the shared fleet view (replica mode only).
	view view
	// refreshMu makes refreshes one at a time (the refresh loop and the
	// fleet leader's sweep both refresh).
	refreshMu sync.Mutex
	// lead is the fleet leader's state, used by SweepFleet only.
	lead leadState
}

// entry is one agent's live state. Fields are guarded by Registry.mu.
type entry struct {
	rec           store.Agent
	hello         *flotillav1.Hello
	lastHeartbeat *flotillav1.Heartbeat
	heartbeatAt   time.Time // control-plane time of the last heartbeat
	session       *Session
	persistedAt   time.Time // when the heartbeat was last written
	// attachPending is set by Attach until the flush that writes this
	// replica as the stream holder, unconditionally (replica mode).
	attachPending bool
}

// New returns a Registry; call Load before serving.
func New(cfg Config) (*Registry, error) {
	if cfg.Store == nil {
		return nil, errors.New("fleet: Store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LostAfter == 0 {
		cfg.LostAfter = DefaultLostAfter
	}
	if cfg.ReconnectGrace == 0 {
		cfg.ReconnectGrace = DefaultReconnectGrace
	}
	cfg.ReconnectGrace = max(cfg.ReconnectGrace, cfg.LostAfter)
	if cfg.LostAfter < time.Second {
		return nil, fmt.Errorf("fleet: agent_lost_after %s is below the 1s minimum", cfg.LostAfter)
	}
	if cfg.PersistInterval == 0 {
		cfg.PersistInterval = time.Minute
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = time.Second
	}
	if err := cfg.Replica.validate(); err != nil {
		return nil, err
	}
	return &Registry{
		cfg:    cfg,
		log:    cfg.Logger,
		agents: make(map[string]*entry),
		dirty:  make(map[string]struct{}),
		shed:   make(map[string]time.Time),
	}, nil
}

// LostAfter returns the configured loss threshold.
func (r *Registry) LostAfter() time.Duration { return r.cfg.LostAfter }

// ReconnectGrace is how long after StartedAt an agent not heard from since
// may take to come back (at least LostAfter).
func (r *Registry) ReconnectGrace() time.Duration { return r.cfg.ReconnectGrace }

// StartedAt is when this process loaded the fleet.
func (r *Registry) StartedAt() time.Time { return r.startedAt }

// Load reads every agent from the store. Agents that were connected when a
// previous process stopped are marked disconnected: their streams died with
// that process, and they have LostAfter from now to come back.
func (r *Registry) Load(ctx context.Context) error {
	recs, err := r.cfg.Store.ListAgents(ctx)
	if err != nil {
		return fmt.Errorf("fleet: load agents: %w", err)
	}
	r.load(recs)
	if r.replicaMode() {
		if err := r.showDeadHolders(ctx); err != nil {
			return fmt.Errorf("fleet: load agents: %w", err)
		}
	}
	return nil
}

// load fills the registry from the stored agents.
func (r *Registry) load(recs []store.Agent) {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.startedAt = now
	for _, rec := range recs {
		if !rec.DeregisteredAt.IsZero() {
			continue // gone for good; kept in the store for the record
		}
		e := &entry{rec: rec, persistedAt: now}
		e.hello = decode[flotillav1.Hello](rec.Hello, r.log, rec.ID)
		e.lastHeartbeat = decode[flotillav1.Heartbeat](rec.LastHeartbeat, r.log, rec.ID)
		e.heartbeatAt = rec.LastSeenAt
		// A replica leaves the rows as they are: other replicas may hold
		// those streams, and the fleet leader decides losses.
		if rec.State == store.AgentConnected && !r.replicaMode() {
			r.setState(e, store.AgentDisconnected, "control plane restarted; waiting for the agent to reconnect", now)
		}
		r.view.seen = max(r.view.seen, rec.StatusSeq)
		r.agents[rec.ID] = e
		r.ids = append(r.ids, rec.ID)
	}
	sort.Strings(r.ids)
}

func decode[T any, PT interface {
	*T
	proto.Message
}](b []byte, log *zap.Logger, id string) PT {
	if len(b) == 0 {
		return nil
	}
	m := PT(new(T))
	if err := proto.Unmarshal(b, m); err != nil {
		log.Warn("ignoring unreadable stored agent data", logging.AgentID(id), zap.Error(err))
		return nil
	}
	return m
}

// Add inserts a newly registered agent.
func (r *Registry) Add(rec store.Agent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.agents[rec.ID]; ok {
		return
	}
	r.insertLocked(&entry{rec: rec, persistedAt: rec.RegisteredAt})
}

// insertLocked adds e, whose agent the registry does not hold, with r.mu
// held.
func (r *Registry) insertLocked(e *entry) {
	r.agents[e.rec.ID] = e
	i := sort.SearchStrings(r.ids, e.rec.ID)
	r.ids = slices.Insert(r.ids, i, e.rec.ID)
}

// Remove forgets a deregistered agent: its open stream, if any, is closed
// with reason, and the agent leaves the fleet (listings, metrics, Attach).
// It reports whether the registry held the agent.
func (r *Registry) Remove(id string, reason error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.removeLocked(id, reason)
}

// removeLocked is Remove with r.mu held.
func (r *Registry) removeLocked(id string, reason error) bool {
	e, ok := r.agents[id]
	if !ok {
		return false
	}
	if e.session != nil {
		e.session.close(reason)
		e.session = nil
	}
	delete(r.agents, id)
	delete(r.dirty, id)
	if i, found := sort.Find(len(r.ids), func(i int) int { return strings.Compare(id, r.ids[i]) }); found {
		r.ids = slices.Delete(r.ids, i, i+1)
	}
	r.log.Info("agent removed from the fleet", logging.AgentID(id), zap.String("reason", reason.Error()))
	return true
}

// SetCertificate records an agent's renewed certificate (already stored).
func (r *Registry) SetCertificate(id, serial string, notAfter time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.agents[id]; ok {
		e.rec.CertSerial, e.rec.CertNotAfter = serial, notAfter
	}
}

// setState changes an entry's state and marks it for the store. The caller
// holds r.mu.
func (r *Registry) setState(e *entry, state, reason string, now time.Time) {
	if e.rec.State == state && e.rec.StateReason == reason {
		return
	}
	from := e.rec.State
	e.rec.State, e.rec.StateReason, e.rec.StateChangedAt = state, reason, now
	r.dirty[e.rec.ID] = struct{}{}
	r.log.Info("agent state changed",
		logging.AgentID(e.rec.ID), logging.Hostname(e.rec.Hostname),
		zap.String("from", from), zap.String("to", state), zap.String("reason", reason))
	// A return from lost is told by the flush in replica mode (toldBack):
	// this replica's view may not know of the loss, or the agent may have
	// returned to another replica first.
	back := from == store.AgentLost && state == store.AgentConnected
	if fn := r.cfg.OnStateChange; fn != nil && from != state && !(back && r.replicaMode()) {
		fn(StateChange{AgentID: e.rec.ID, Hostname: e.rec.Hostname, From: from, To: state, Reason: reason, At: now})
	}
}

// StateChange is one change of an agent's state (see
// Config.OnStateChange). From is "" when this process did not know it (an
// agent the fleet leader marked lost).
type StateChange struct {
	AgentID  string
	Hostname string
	From, To string
	Reason   string
	At       time.Time
}

// Attach binds a new stream to an agent after its hello. A previous stream of
// the same agent is closed: the newest connection wins, because the old one
// is almost always a half-open TCP connection the agent has given up on.
func (r *Registry) Attach(id string, hello *flotillav1.Hello, peerAddr string) (*Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now() // under the lock: see Flush
	e, ok := r.agents[id]
	if !ok {
		return nil, ErrUnknownAgent
	}
	if old := e.session; old != nil {
		old.close(errReplaced)
	}
	s := newSession(id)
	s.entry = e
	e.session = s
	e.attachPending = r.replicaMode()
	e.hello = hello
	e.rec.Hello = nil // re-encoded when flushed
	e.rec.Version = hello.GetVersion()
	if h := hello.GetHostname(); h != "" {
		e.rec.Hostname = h
	}
	e.rec.Labels = MergeLabels(hello.GetLabels(), e.rec.PinnedLabels)
	e.rec.ConnectedAt, e.rec.LastSeenAt, e.rec.PeerAddress = now, now, peerAddr
	r.dirty[id] = struct{}{}
	r.setState(e, store.AgentConnected, "stream opened from "+peerAddr, now)
	return s, nil
}

// Detach unbinds a stream that ended. It is a no-op when a newer stream has
// already replaced s.
func (r *Registry) Detach(s *Session, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now() // under the lock: see Flush
	s.close(errDetached)
	e := s.entry
	if e.session != s {
		return
	}
	e.session = nil
	if e.rec.State == store.AgentConnected {
		r.setState(e, store.AgentDisconnected, reason, now)
	}
}

// Heartbeat records a heartbeat from the agent bound to s.
func (r *Registry) Heartbeat(s *Session, hb *flotillav1.Heartbeat) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now() // under the lock: see Flush
	e := s.entry
	if e.session != s {
		return errReplaced
	}
	changed := heartbeatChanged(e.lastHeartbeat, hb)
	e.lastHeartbeat, e.heartbeatAt = hb, now
	e.rec.LastSeenAt = now
	r.heartbeats++
	// Only a change (health, containers) is written at once, replicas
	// included: the other replicas know the agent alive from this
	// replica's lease and its flush progress (see publishFlushed), and
	// take its readings at the persist interval.
	if changed || now.Sub(e.persistedAt) >= r.cfg.PersistInterval {
		e.rec.LastHeartbeat = nil // re-encoded when flushed
		r.dirty[e.rec.ID] = struct{}{}
	}
	if e.rec.State != store.AgentConnected {
		r.setState(e, store.AgentConnected, "heartbeat received", now)
	}
	return nil
}

// Touch records that the agent bound to s said something other than a
// heartbeat (a command's progress or result), which also proves it is
// alive. Its heartbeats are not written for it: a replica driving a health
// gate on the agent counts the reading that shows the restart's container,
// vouched current by this replica's flush watermark (rollout's
// currentSinceRestart), even when it came before the restart's result.
func (r *Registry) Touch(s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := s.entry; e.session == s {
		e.rec.LastSeenAt = r.cfg.Now()
	}
}

// heartbeatChanged reports whether a heartbeat differs from the previous one
// in a way worth writing at once: application health or the containers.
func heartbeatChanged(prev, next *flotillav1.Heartbeat) bool {
	if prev == nil {
		return true
	}
	if (prev.GetApp() == nil) != (next.GetApp() == nil) || prev.GetApp().GetHealthy() != next.GetApp().GetHealthy() {
		return true
	}
	pc, nc := prev.GetContainers(), next.GetContainers()
	if len(pc) != len(nc) {
		return true
	}
	for i := range pc {
		// ManagedContainer is five strings, the host ports and the
		// resources: compared directly, not by reflection (proto.Equal was
		// most of an unchanged heartbeat's cost). The host ports matter at
		// once: a blue-green switch or a surge moves the live container to
		// the other port, and every replica plans from them.
		p, n := pc[i], nc[i]
		if p.GetName() != n.GetName() || p.GetContainerId() != n.GetContainerId() || p.GetImage() != n.GetImage() ||
			p.GetImageId() != n.GetImageId() || p.GetState() != n.GetState() || !slices.Equal(p.GetHostPorts(), n.GetHostPorts()) ||
			resourceEventsChanged(p.GetResources(), n.GetResources()) ||
			memoryBand(p.GetResources()) != memoryBand(n.GetResources()) {
			return true
		}
	}
	return false
}

// memoryBandsPerLimit and memoryBandUnlimited size the steps of a
// container's working set that are written at once: a twentieth of its
// memory limit, or 64 MiB without one.
const (
	memoryBandsPerLimit = 20
	memoryBandUnlimited = 64 << 20
)

// memoryBand is the step a container's working set is in. A heartbeat
// whose container moved to another step is written at once, so that the
// other replicas, the memory remediation driver's among them, see every
// working set within a step of the container's, current up to its holder's
// flush watermark; the figures within a step wait for the persist
// interval like the rest of the readings. -1 without a reading.
func memoryBand(r *flotillav1.ContainerResources) int64 {
	if r == nil {
		return -1
	}
	ws, limit := r.GetMemoryWorkingSetBytes(), r.GetMemoryLimitBytes()
	if limit == 0 {
		return int64(ws / memoryBandUnlimited)
	}
	return int64(min(ws, limit) * memoryBandsPerLimit / limit)
}

// resourceEventsChanged reports a restart or an OOM kill between two
// readings of a container. The CPU and memory figures change with every
// reading and wait for the persist interval like the host's, except a
// working set that moves to another step (memoryBand).
func resourceEventsChanged(p, n *flotillav1.ContainerResources) bool {
	return p.GetRestartCount() != n.GetRestartCount() || p.GetOomKills() != n.GetOomKills() ||
		p.GetOomKilled() != n.GetOomKilled() || !p.GetStartedAt().AsTime().Equal(n.GetStartedAt().AsTime())
}

// MergeLabels returns claimed labels overridden by pinned ones (from the
// join token): an agent can never claim away a label it was pinned to.
func MergeLabels(claimed, pinned map[string]string) map[string]string {
	out := make(map[string]string, len(claimed)+len(pinned))
	maps.Copy(out, claimed)
	maps.Copy(out, pinned)
	return out
}

// CloseSessions ends every open stream with reason; the server calls it on
// shutdown so that graceful stop does not wait for streams that never end.
func (r *Registry) CloseSessions(reason error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.agents {
		if e.session != nil {
			e.session.close(reason)
		}
	}
}

// SessionFor returns the agent's open stream, if it has one.
func (r *Registry) SessionFor(id string) (*Session, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.agents[id]
	if !ok || e.session == nil {
		return nil, false
	}
	return e.session, true
}

// State returns an agent's liveness state ("" for an unknown agent).
func (r *Registry) State(id string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e, ok := r.agents[id]; ok {
		return e.rec.State
	}
	return ""
}
