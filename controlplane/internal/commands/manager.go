package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/limit"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/ids"
	"flotilla.dev/controlplane/internal/selector"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/work"
	"flotilla.dev/pkg/logging"
)

// MaxTargets bounds the hosts of one fleet command.
const MaxTargets = 100000

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	Store      store.CommandStore
	Registry   *fleet.Registry
	Dispatcher *Dispatcher
	Logger     *zap.Logger
	Now        func() time.Time
	Metrics    *Metrics
	// NewID makes fleet command IDs; ids.New when nil.
	NewID func(prefix string) (string, error)
	// Holder is this replica's holder ID when several control planes
	// share the store (the Dispatcher runs in replica mode then): each
	// running fleet command is driven by the replica holding its lease
	// "command/<id>" (see manager_replica.go). "" with one control plane.
	Holder string
	// Feed wakes the watchers of commands driven by other replicas when
	// the store's command changes grew (replica mode); nil: they read it
	// every DefaultCatchUp only.
	Feed store.Feed
	// Leases keeps the fleet commands' leases; required with Holder.
	Leases store.LeaseStore
	// LeaseTTL is the fleet commands' lease TTL (lease.DefaultTTL when 0).
	LeaseTTL time.Duration
	// WorkMetrics counts the fleet commands' leases; nil counts nothing.
	WorkMetrics *work.Metrics
	// OnFinish, when set, is told each fleet command's end once it is
	// stored, without the manager's lock; it must return quickly
	// (notifications write their outbox row and return).
	OnFinish func(ctx context.Context, f Finished)
}

// Finished is a fleet command's end (see ManagerConfig.OnFinish).
type Finished struct {
	ID        string
	Kind      string
	State     flotillav1.FleetCommandState
	CreatedBy string
	At        time.Time
	// Counts are the hosts by final state name.
	Counts map[string]int32
	// Failed are the hosts that did not succeed, with their messages, in
	// agent order.
	Failed []FailedHost
}

// FailedHost is a host of a fleet command that did not succeed.
type FailedHost struct {
	AgentID string
	State   flotillav1.CommandState
	Message string
}

// Manager runs fleet commands.
type Manager struct {
	cfg ManagerConfig
	log *zap.Logger

	mu      sync.Mutex
	running map[string]*run
	// claimer drives the fleet commands under their leases (replica
	// mode); nil with one control plane.
	claimer *work.Claimer
	// adopting, set by tests, runs in Adopt between the command's joining
	// running and its host commands' joining the dispatcher.
	adopting func(fcID string)
}

// run is a fleet command in progress.
type run struct {
	fc      store.FleetCommand
	req     *flotillav1.RunCommandRequest
	hosts   map[string]*store.HostCommand // by host command ID
	order   []string                      // host command IDs by agent ID
	maxConc int
	maxErr  int // 0: no limit
	timeout time.Duration
	// cancelled is the operator's reason once CancelCommand was called.
	cancelled string
	watchers  map[*watcher]struct{}
	// ended is closed when the command stops being driven here (finished,
	// or moved to another replica); see end.
	ended chan struct{}

	// Host counts by phase, kept up to date with hosts so that advance,
	// which runs on every host's end, costs no scan of the hosts.
	queued, inflight, done, failures int
	// firstQueued is an index into order: no host before it is queued.
	firstQueued int
	// skipping is set while advance skips the queued hosts, so that the
	// updates of that skip do not each start another one.
	skipping bool
}

// NewManager returns a Manager and registers it with the dispatcher.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if cfg.Store == nil || cfg.Registry == nil || cfg.Dispatcher == nil {
		return nil, errors.New("commands: manager needs Store, Registry and Dispatcher")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = ids.New
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, running: make(map[string]*run)}
	if cfg.Holder != "" {
		if err := m.newClaimer(); err != nil {
			return nil, err
		}
	}
	cfg.Dispatcher.listen(m.onUpdate)
	if cfg.Holder != "" {
		cfg.Dispatcher.drivenHere = append(cfg.Dispatcher.drivenHere, m.drives)
	}
	return m, nil
}

// Load resumes the fleet commands that were running when the control plane
// stopped. Call after Dispatcher.Load.
func (m *Manager) Load(ctx context.Context) error {
	fcs, err := m.cfg.Store.ListFleetCommands(ctx, store.FleetCommandQuery{States: []int32{int32(flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING)}})
	if err != nil {
		return fmt.Errorf("commands: load fleet commands: %w", err)
	}
	for _, fc := range fcs {
		hcs, err := m.cfg.Store.ListHostCommands(ctx, fc.ID)
		if err != nil {
			return fmt.Errorf("commands: load fleet command %s: %w", fc.ID, err)
		}
		r, err := newRun(fc, hcs)
		if err != nil {
			m.log.Error("fleet command unreadable; left as is", logging.CommandID(fc.ID), zap.Error(err))
			continue
		}
		m.mu.Lock()
		m.running[fc.ID] = r
		m.mu.Unlock()
		m.log.Info("resuming fleet command", logging.CommandID(fc.ID), zap.Int("hosts", len(hcs)))
		m.advance(ctx, fc.ID, callerOps{ctx, m.cfg.Dispatcher})
	}
	return nil
}

func newRun(fc store.FleetCommand, hcs []store.HostCommand) (*run, error) {
	req := &flotillav1.RunCommandRequest{}
	if err := proto.Unmarshal(fc.Request, req); err != nil {
		return nil, err
	}
	n := len(hcs)
	r := &run{
		fc: fc, req: req, hosts: make(map[string]*store.HostCommand, n),
		maxConc:  limit.Resolve(req.GetMaxConcurrency(), n, n),
		maxErr:   limit.Resolve(req.GetMaxErrors(), n, 0),
		timeout:  req.GetTimeout().AsDuration(),
		watchers: make(map[*watcher]struct{}),
		ended:    make(chan struct{}),
	}
	r.order = make([]string, 0, n)
	for i := range hcs {
		hc := hcs[i]
		r.hosts[hc.ID] = &hc
		r.order = append(r.order, hc.ID)
		r.count(&hc, 1)
	}
	return r, nil
}

// Start validates and starts a fleet command on behalf of createdBy (the
// caller's principal, "kind:id"; "" when unknown).
func (m *Manager) Start(ctx context.Context, req *flotillav1.RunCommandRequest, createdBy string) (*flotillav1.FleetCommand, error) {
	return m.StartWithID(ctx, "", req, createdBy)
}

// StartWithID is Start with the fleet command's ID chosen by the caller
// ("" makes one): a subsystem that records the ID before it starts the
// command (the backup scheduler) starts the same command again after a
// crash instead of a second one. An ID already stored returns an error
// wrapping store.ErrConflict, and nothing is started.
func (m *Manager) StartWithID(ctx context.Context, id string, req *flotillav1.RunCommandRequest, createdBy string) (*flotillav1.FleetCommand, error) {
	if err := ValidateSpec("spec", req.GetSpec()); err != nil {
		return nil, err
	}
	for field, l := range map[string]*flotillav1.Limit{"max_concurrency": req.GetMaxConcurrency(), "max_errors": req.GetMaxErrors()} {
		if sub, err := limit.Check(l); err != nil {
			return nil, invalid(field+sub, "%v", err)
		}
	}
	kind := command.Kind(req.GetSpec())
	timeout := DefaultTimeout(kind)
	if req.Timeout != nil {
		if err := req.GetTimeout().CheckValid(); err != nil || req.GetTimeout().AsDuration() <= 0 || req.GetTimeout().AsDuration() > MaxTimeout {
			return nil, invalid("timeout", "must be positive and at most %s", MaxTimeout)
		}
		timeout = req.GetTimeout().AsDuration()
	}
	if len(req.GetReason()) > 1024 {
		return nil, invalid("reason", "at most 1024 bytes")
	}
	agents, err := m.targets(req)
	if err != nil {
		return nil, err
	}
	if id == "" {
		if id, err = m.cfg.NewID("cmd-"); err != nil {
			return nil, errors.New("could not generate a command ID")
		}
	}
	accepted := proto.Clone(req).(*flotillav1.RunCommandRequest)
	accepted.AgentIds, accepted.Timeout = agents, durationpb.New(timeout)
	reqBytes, err := proto.Marshal(accepted)
	if err != nil {
		return nil, errors.New("could not encode the request")
	}
	specBytes, err := proto.Marshal(req.GetSpec())
	if err != nil {
		return nil, errors.New("could not encode the spec")
	}
	now := m.cfg.Now()
	fc := store.FleetCommand{ID: id, Kind: kind, Request: reqBytes, CreatedBy: createdBy,
		State: int32(flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING), CreatedAt: now}
	// The first max_concurrency hosts are stored released, as advance
	// would release them right after: one write of every host instead of
	// two before the first agent hears of the command.
	release := limit.Resolve(req.GetMaxConcurrency(), len(agents), len(agents))
	hcs := make([]store.HostCommand, len(agents))
	for i, a := range agents {
		hcs[i] = store.HostCommand{ID: id + "." + a, FleetCommandID: id, AgentID: a, Kind: kind, Spec: specBytes,
			State: int32(flotillav1.CommandState_COMMAND_STATE_PENDING), Message: "queued: waiting for a concurrency slot", CreatedAt: now}
		if i < release {
			hcs[i].ReleasedAt, hcs[i].Deadline = now, now.Add(timeout)
			hcs[i].Message = m.cfg.Dispatcher.releaseMessage(a, hcs[i].Deadline)
		}
	}
	r, err := m.begin(ctx, fc, hcs)
	if err != nil {
		return nil, err
	}
	m.cfg.Metrics.started()
	m.log.Info("fleet command started", logging.CommandID(id), zap.String("kind", kind), zap.Int("hosts", len(agents)),
		logging.Principal(createdBy), zap.Int("max_concurrency", r.maxConc), zap.Int("max_errors", r.maxErr),
		zap.Duration("timeout", timeout), zap.String("reason", req.GetReason()))
	m.advance(ctx, id, callerOps{ctx, m.cfg.Dispatcher})
	return m.Get(ctx, id, req.GetView())
}

// begin stores a new fleet command and its hosts and starts driving it:
// in replica mode under its lease, taken at once (registered first, so
// that a claim of the stored command finds it driven here).
func (m *Manager) begin(ctx context.Context, fc store.FleetCommand, hcs []store.HostCommand) (*run, error) {
	r, _ := newRun(fc, hcs) // the request was just encoded; it decodes
	exists := fmt.Errorf("command %s already exists: %w", fc.ID, store.ErrConflict)
	if m.claimer != nil {
		m.mu.Lock()
		if _, ok := m.running[fc.ID]; ok {
			// StartWithID again with the ID of a command this manager
			// runs: leave that one alone.
			m.mu.Unlock()
			return nil, exists
		}
		m.running[fc.ID] = r
		m.mu.Unlock()
	}
	if err := m.cfg.Store.CreateFleetCommand(ctx, fc, hcs); err != nil {
		m.mu.Lock()
		delete(m.running, fc.ID)
		m.mu.Unlock()
		if errors.Is(err, store.ErrConflict) {
			return nil, exists
		}
		m.log.Error("storing a fleet command failed", zap.Error(err))
		return nil, fault.Store("the command could not be stored; nothing was sent", err)
	}
	if m.claimer == nil {
		m.mu.Lock()
		m.running[fc.ID] = r
		m.mu.Unlock()
		m.cfg.Dispatcher.TrackReleased(hcs, nil)
		return r, nil
	}
	m.claimNew(ctx, fc.ID)
	fence, held := m.claimer.Fence(fc.ID)
	if !held {
		// Stored but not driven here: whichever replica's claim pass
		// takes its lease adopts it from the store, and the replicas
		// holding its agents' streams deliver it meanwhile.
		m.mu.Lock()
		m.endLocked(fc.ID, r, errMoved)
		m.mu.Unlock()
		return r, nil
	}
	m.cfg.Dispatcher.TrackReleased(hcs, fence)
	return r, nil
}

// targets resolves the request's hosts to sorted agent IDs.
func (m *Manager) targets(req *flotillav1.RunCommandRequest) ([]string, error) {
	ids, sel := req.GetAgentIds(), req.GetSelector()
	switch {
	case len(ids) > 0 && sel != "":
		return nil, invalid("selector", "give agent_ids or a selector, not both")
	case len(ids) == 0 && sel == "":
		return nil, invalid("agent_ids", "give agent_ids or a selector to choose the hosts")
	case len(ids) > MaxTargets:
		return nil, invalid("agent_ids", "%d agents, at most %d", len(ids), MaxTargets)
	}
	if len(ids) > 0 {
		seen := make(map[string]bool, len(ids))
		var out []string
		for i, id := range ids {
			if _, ok := m.cfg.Registry.Get(id); !ok {
				return nil, &fault.NotFoundError{Field: fmt.Sprintf("agent_ids[%d]", i), Kind: "agent", ID: id}
			}
			if !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
		sort.Strings(out)
		return out, nil
	}
	s, err := selector.Parse(sel)
	if err != nil {
		return nil, invalid("selector", "%v", err)
	}
	page, _, total := m.cfg.Registry.List(fleet.Query{Selector: s, Limit: MaxTargets + 1})
	if total == 0 {
		return nil, fault.Preconditionf("selector %q matches no registered agent", sel)
	}
	if total > MaxTargets {
		return nil, invalid("selector", "matches %d agents, at most %d per command", total, MaxTargets)
	}
	out := make([]string, len(page))
	for i, a := range page {
		out[i] = a.Record.ID
	}
	return out, nil
}

// onUpdate follows host command changes of running fleet commands. It
// runs on the dispatcher's goroutine: what it asks of the dispatcher goes
// through ops.
func (m *Manager) onUpdate(u Update, ops hostOps) {
	fcID := u.Command.FleetCommandID
	if fcID == "" {
		return
	}
	m.mu.Lock()
	r, ok := m.running[fcID]
	if ok {
		if hc, ok := r.hosts[u.Command.ID]; ok && !command.Terminal(flotillav1.CommandState(hc.State)) {
			r.set(hc, u.Command)
		}
		if len(r.watchers) > 0 {
			r.broadcast(&flotillav1.WatchCommandResponse{Body: &flotillav1.WatchCommandResponse_Event{Event: &flotillav1.HostCommandEvent{
				AgentId: u.Command.AgentID, Event: u.Event,
			}}})
		}
	}
	m.mu.Unlock()
	if ok && command.Terminal(flotillav1.CommandState(u.Command.State)) {
		// A fresh context: this runs on the dispatcher's goroutine, which
		// also stores the fleet command's end from here (once per command).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		m.advance(ctx, fcID, ops)
	}
}

// advance releases queued hosts within the limits, skips them once
// max_errors is reached or the command was cancelled, and finishes the
// fleet command when every host is done. ops is the dispatcher, called
// from a listener or not.
func (m *Manager) advance(ctx context.Context, fcID string, ops hostOps) {
	m.mu.Lock()
	r, ok := m.running[fcID]
	if !ok {
		m.mu.Unlock()
		return
	}
	skipReason := ""
	switch {
	case r.cancelled != "":
		skipReason = "not started: the command was cancelled (" + r.cancelled + ")"
	case r.maxErr > 0 && r.failures >= r.maxErr:
		skipReason = fmt.Sprintf("not started: max_errors reached (%d hosts failed, limit %d)", r.failures, r.maxErr)
	}
	var skip, release []string
	switch {
	case skipReason != "" && r.queued > 0 && !r.skipping:
		skip = r.queuedHosts(r.queued)
		r.skipping = true
	case skipReason == "" && r.queued > 0 && r.inflight < r.maxConc:
		release = r.queuedHosts(min(r.queued, r.maxConc-r.inflight))
	}
	waiting := r.queued > 0
	finished := r.done == len(r.order)
	timeout := r.timeout
	m.mu.Unlock()

	switch {
	case skipReason != "" && waiting:
		if skip == nil {
			return // another advance is skipping them
		}
		// The skip's updates call advance again; they find the skip in
		// progress, the last of them the command finished.
		ops.finish(skip, flotillav1.CommandState_COMMAND_STATE_SKIPPED, skipReason, func(err error) {
			m.mu.Lock()
			r.skipping = false
			m.mu.Unlock()
			if err != nil {
				m.log.Error("skipping queued hosts failed", logging.CommandID(fcID), zap.Error(err))
			}
		})
	case len(release) > 0:
		ops.release(release, timeout, func(err error) {
			if err != nil {
				m.log.Error("releasing hosts failed; will retry on the next event", logging.CommandID(fcID), zap.Error(err))
			}
		})
	case finished:
		m.finish(ctx, fcID)
	}
}

// finish records the fleet command's outcome and ends its watchers.
func (m *Manager) finish(ctx context.Context, fcID string) {
	m.mu.Lock()
	r, ok := m.running[fcID]
	if !ok {
		m.mu.Unlock()
		return
	}
	state := flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED
	for _, hc := range r.hosts {
		if flotillav1.CommandState(hc.State) != flotillav1.CommandState_COMMAND_STATE_SUCCEEDED {
			state = flotillav1.FleetCommandState_FLEET_COMMAND_STATE_FAILED
		}
	}
	if r.cancelled != "" {
		state = flotillav1.FleetCommandState_FLEET_COMMAND_STATE_CANCELLED
	}
	now := m.cfg.Now()
	counts := r.summary()
	summary, _ := json.Marshal(counts)
	fence, driven := m.fence(fcID)
	err := store.ErrFenced
	if driven {
		err = m.cfg.Store.UpdateFleetCommand(ctx, fcID, int32(state), now, string(summary), fence)
	}
	if err != nil {
		if errors.Is(err, store.ErrFenced) {
			// Every host is done: the dispatcher holds none of them.
			m.endLocked(fcID, r, errMoved)
			m.mu.Unlock()
			m.log.Warn("not driving the fleet command under its lease any more; its driver records its end", logging.CommandID(fcID), zap.Error(err))
			return
		}
		m.mu.Unlock()
		m.log.Error("recording the end of a fleet command failed; it will be retried on restart", logging.CommandID(fcID), zap.Error(err))
		return
	}
	r.fc.State, r.fc.FinishedAt, r.fc.Summary = int32(state), now, string(summary)
	if len(r.watchers) > 0 {
		// The final snapshot, every host's entry: rendered only for
		// someone watching (10,000 hosts take tens of milliseconds).
		r.broadcast(&flotillav1.WatchCommandResponse{Body: &flotillav1.WatchCommandResponse_Snapshot{Snapshot: r.snapshot(true)}})
	}
	fin := m.finished(r, state, now, counts)
	m.endLocked(fcID, r, nil)
	m.mu.Unlock()
	m.log.Info("fleet command finished", logging.CommandID(fcID), zap.String("state", state.String()), zap.Any("summary", counts))
	if m.cfg.OnFinish != nil {
		m.cfg.OnFinish(ctx, fin)
	}
}

// finished describes a fleet command's end for OnFinish. Called with m.mu
// held.
func (m *Manager) finished(r *run, state flotillav1.FleetCommandState, now time.Time, counts map[string]int32) Finished {
	f := Finished{ID: r.fc.ID, Kind: r.fc.Kind, State: state, CreatedBy: r.fc.CreatedBy, At: now, Counts: counts}
	if m.cfg.OnFinish == nil {
		return f
	}
	for _, id := range r.order {
		hc := r.hosts[id]
		if s := flotillav1.CommandState(hc.State); s != flotillav1.CommandState_COMMAND_STATE_SUCCEEDED {
			f.Failed = append(f.Failed, FailedHost{AgentID: hc.AgentID, State: s, Message: hc.Message})
		}
	}
	return f
}

// Cancel cancels a running fleet command.
func (m *Manager) Cancel(ctx context.Context, fcID, reason string) (*flotillav1.FleetCommand, error) {
	if reason == "" {
		reason = "cancelled by an operator"
	}
	m.mu.Lock()
	r, ok := m.running[fcID]
	var released []string
	if ok {
		r.cancelled = reason
		released = r.releasedUnfinished()
	}
	m.mu.Unlock()
	if !ok {
		fc, err := m.Get(ctx, fcID, flotillav1.CommandView_COMMAND_VIEW_FULL)
		if err != nil {
			return nil, err
		}
		if m.replica() && fc.GetState() == flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING {
			return m.requestCancel(ctx, store.FleetCommand{ID: fcID}, reason)
		}
		return nil, fault.Preconditionf("command %s already ended (%s)", fcID, fc.GetState())
	}
	m.log.Info("fleet command cancelled", logging.CommandID(fcID), zap.String("reason", reason))
	if err := m.cfg.Dispatcher.Cancel(ctx, released, reason); err != nil {
		return nil, fault.Store("the cancel could not be recorded", err)
	}
	m.advance(ctx, fcID, callerOps{ctx, m.cfg.Dispatcher})
	return m.Get(ctx, fcID, flotillav1.CommandView_COMMAND_VIEW_FULL)
}

// releasedUnfinished returns the IDs of r's host commands released to
// their agents and not finished: those a cancel must stop.
func (r *run) releasedUnfinished() []string {
	var ids []string
	for _, id := range r.order {
		hc := r.hosts[id]
		if !hc.ReleasedAt.IsZero() && !command.Terminal(flotillav1.CommandState(hc.State)) {
			ids = append(ids, id)
		}
	}
	return ids
}

// Get returns a fleet command, with its hosts unless view is
// COMMAND_VIEW_SUMMARY.
func (m *Manager) Get(ctx context.Context, fcID string, view flotillav1.CommandView) (*flotillav1.FleetCommand, error) {
	withHosts := view != flotillav1.CommandView_COMMAND_VIEW_SUMMARY
	m.mu.Lock()
	if r, ok := m.running[fcID]; ok {
		snap := r.snapshot(withHosts)
		m.mu.Unlock()
		return snap, nil
	}
	m.mu.Unlock()
	fc, err := m.cfg.Store.GetFleetCommand(ctx, fcID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &fault.NotFoundError{Kind: "command", ID: fcID, Hint: "ListCommands shows recent ones"}
	}
	if err != nil {
		return nil, fault.Store("reading command "+fcID, err)
	}
	if !withHosts {
		// A finished command's summary is stored with it.
		return m.listEntry(fc), nil
	}
	hcs, err := m.cfg.Store.ListHostCommands(ctx, fcID)
	if err != nil {
		return nil, fault.Store("reading the hosts of command "+fcID, err)
	}
	r, err := newRun(fc, hcs)
	if err != nil {
		return nil, fmt.Errorf("command %s is unreadable", fcID)
	}
	return r.snapshot(true), nil
}

// List returns fleet commands newest first, without hosts.
func (m *Manager) List(ctx context.Context, states []flotillav1.FleetCommandState, before string, limit int) ([]*flotillav1.FleetCommand, error) {
	q := store.FleetCommandQuery{Before: before, Limit: limit}
	for _, s := range states {
		q.States = append(q.States, int32(s))
	}
	fcs, err := m.cfg.Store.ListFleetCommands(ctx, q)
	if err != nil {
		return nil, fault.Store("listing commands", err)
	}
	out := make([]*flotillav1.FleetCommand, 0, len(fcs))
	for _, fc := range fcs {
		out = append(out, m.listEntry(fc))
	}
	return out, nil
}

// listEntry renders a fleet command for a listing: no hosts, but the
// summary, live for a running command and as stored for a finished one.
func (m *Manager) listEntry(fc store.FleetCommand) *flotillav1.FleetCommand {
	m.mu.Lock()
	if r, ok := m.running[fc.ID]; ok {
		snap := r.snapshot(false)
		m.mu.Unlock()
		return snap
	}
	m.mu.Unlock()
	r, err := newRun(fc, nil)
	if err != nil {
		return &flotillav1.FleetCommand{Id: fc.ID, State: flotillav1.FleetCommandState(fc.State), CreatedAt: ts(fc.CreatedAt)}
	}
	snap := r.snapshot(false)
	if fc.Summary != "" {
		_ = json.Unmarshal([]byte(fc.Summary), &snap.Summary)
	}
	return snap
}
