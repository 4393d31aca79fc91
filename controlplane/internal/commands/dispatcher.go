package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
)

// DefaultDeadlineGrace is how long after a command's deadline the control
// plane waits for the agent's own TIMED_OUT before it gives up on the
// command: the agent enforces the deadline too, and its answer is more
// precise.
const DefaultDeadlineGrace = 5 * time.Second

// ErrNotOwner is returned for an event about a command that belongs to
// another agent than the one that sent it.
var ErrNotOwner = errors.New("command belongs to another agent")

// Update is a change of one host command, as listeners see it.
type Update struct {
	Command store.HostCommand
	// Event is what caused the change: the agent's event, or one the
	// control plane made (timeout, cancel, release).
	Event *flotillav1.CommandEvent
}

// Listener receives updates. It is called without the dispatcher's lock
// held, in order for any one command, and must not block for long.
type Listener func(Update)

// DispatcherConfig configures a Dispatcher.
type DispatcherConfig struct {
	Store    store.CommandStore
	Registry *fleet.Registry
	Logger   *zap.Logger
	Now      func() time.Time
	Metrics  *Metrics
	// DeadlineGrace: see DefaultDeadlineGrace.
	DeadlineGrace time.Duration
	// SweepInterval is how often deadlines are checked (default 1s).
	SweepInterval time.Duration
}

// Dispatcher delivers host commands to agents and tracks their outcome.
type Dispatcher struct {
	cfg DispatcherConfig
	log *zap.Logger

	// mu guards the maps below and the commands they point to. A change
	// of a command is computed under mu, stored without it (batched with
	// the changes other goroutines store at the same time), then applied
	// under mu again; writing keeps the next change of the same command
	// waiting until then, so that every change is stored before the next
	// one of the same command is made, and a command's state in memory is
	// always one the store holds.
	mu        sync.Mutex
	active    map[string]*store.HostCommand
	byAgent   map[string]map[string]*store.HostCommand
	listeners []Listener
	// cancels holds the reason of every cancel requested for an active
	// command, so that an agent that was away when it was requested gets
	// it after the command on its next stream.
	cancels map[string]string
	// writing holds, for each command whose change is being stored, a
	// channel closed once the change is applied or abandoned.
	writing map[string]chan struct{}
	commits committer
	// events holds agents' events until the event loop takes them (see
	// OnEvent).
	events intake
	// notifying holds, for each active command, a channel closed once the
	// listeners have been told about its last change made by an event: the
	// caller of the next event of that command waits for it before telling
	// them about its own, so that listeners see a command's changes in
	// order although each caller tells them from its own goroutine.
	notifying map[string]chan struct{}
}

// NewDispatcher returns a Dispatcher; call Load before serving.
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Store == nil || cfg.Registry == nil {
		return nil, errors.New("commands: dispatcher needs Store and Registry")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DeadlineGrace == 0 {
		cfg.DeadlineGrace = DefaultDeadlineGrace
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Second
	}
	return &Dispatcher{
		cfg: cfg, log: cfg.Logger,
		active:    make(map[string]*store.HostCommand),
		byAgent:   make(map[string]map[string]*store.HostCommand),
		cancels:   make(map[string]string),
		writing:   make(map[string]chan struct{}),
		notifying: make(map[string]chan struct{}),
		commits:   committer{store: cfg.Store},
	}, nil
}

// Listen adds a listener; call before serving.
func (d *Dispatcher) Listen(l Listener) { d.listeners = append(d.listeners, l) }

// Load reads the unfinished host commands from the store.
func (d *Dispatcher) Load(ctx context.Context) error {
	hcs, err := d.cfg.Store.ListActiveHostCommands(ctx)
	if err != nil {
		return fmt.Errorf("commands: load active commands: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range hcs {
		d.track(&hcs[i])
		d.cfg.Metrics.inFlight(hcs[i].Kind, 1)
	}
	return nil
}

func (d *Dispatcher) track(hc *store.HostCommand) {
	d.active[hc.ID] = hc
	m := d.byAgent[hc.AgentID]
	if m == nil {
		m = make(map[string]*store.HostCommand)
		d.byAgent[hc.AgentID] = m
	}
	m[hc.ID] = hc
}

func (d *Dispatcher) untrack(hc *store.HostCommand) {
	delete(d.active, hc.ID)
	delete(d.cancels, hc.ID)
	delete(d.notifying, hc.ID)
	if m := d.byAgent[hc.AgentID]; m != nil {
		delete(m, hc.ID)
		if len(m) == 0 {
			delete(d.byAgent, hc.AgentID)
		}
	}
}

// Track adds host commands that were just created in the store (queued or
// released) to the dispatcher.
func (d *Dispatcher) Track(hcs []store.HostCommand) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range hcs {
		hc := hcs[i]
		d.track(&hc)
		d.cfg.Metrics.inFlight(hc.Kind, 1)
	}
}

// TrackReleased adds host commands that were just created in the store,
// some of them already released (stored with their deadline and message,
// as Release would have stored them): those are sent to their agents and
// reported to listeners as Release reports them. Creating commands
// released spares each of them a second write before its agent can start.
func (d *Dispatcher) TrackReleased(hcs []store.HostCommand) {
	now := d.cfg.Now()
	var (
		updates []Update
		specs   specDecoder
	)
	d.mu.Lock()
	for i := range hcs {
		hc := hcs[i]
		d.track(&hc)
		d.cfg.Metrics.inFlight(hc.Kind, 1)
		if hc.ReleasedAt.IsZero() {
			continue
		}
		d.sendLocked(&hc, now, &specs)
		updates = append(updates, Update{Command: hc, Event: &flotillav1.CommandEvent{
			CommandId: hc.ID, State: flotillav1.CommandState(hc.State), Message: hc.Message, At: timestamppb.New(hc.ReleasedAt)}})
	}
	d.mu.Unlock()
	d.notify(updates)
}

// Release gives queued host commands their turn: each gets a deadline of
// now+timeout, is stored, then sent if its agent is connected. An offline
// agent's command waits for it until the deadline.
func (d *Dispatcher) Release(ctx context.Context, ids []string, timeout time.Duration) error {
	now := d.cfg.Now()
	d.mu.Lock()
	d.waitIdleLocked(ids)
	var (
		changed []store.HostCommand
		updates []Update
	)
	for _, id := range ids {
		hc, ok := d.active[id]
		if !ok || !hc.ReleasedAt.IsZero() {
			continue
		}
		next := *hc
		next.ReleasedAt, next.Deadline = now, now.Add(timeout)
		next.Message = d.releaseMessage(hc.AgentID, next.Deadline)
		changed = append(changed, next)
	}
	if err := d.storeLocked(ctx, changed); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("commands: release: %w", err)
	}
	var specs specDecoder
	for i := range changed {
		hc := d.active[changed[i].ID]
		setKeepingSent(hc, changed[i])
		d.sendLocked(hc, now, &specs)
		updates = append(updates, Update{Command: *hc, Event: &flotillav1.CommandEvent{
			CommandId: hc.ID, State: flotillav1.CommandState(hc.State), Message: hc.Message, At: timestamppb.New(now)}})
	}
	d.mu.Unlock()
	d.notify(updates)
	return nil
}

// releaseMessage is a released command's message: where it went.
func (d *Dispatcher) releaseMessage(agentID string, deadline time.Time) string {
	if _, online := d.cfg.Registry.SessionFor(agentID); !online {
		return fmt.Sprintf("agent %s is offline; the command waits for it until %s", agentID, deadline.UTC().Format(time.RFC3339))
	}
	return "sent to the agent"
}

// sendLocked sends a released command to its agent if connected. Sending
// is at-least-once: the agent's journal turns a duplicate into a resend of
// its outcome. specs decodes the stored spec.
func (d *Dispatcher) sendLocked(hc *store.HostCommand, now time.Time, specs *specDecoder) {
	sess, ok := d.cfg.Registry.SessionFor(hc.AgentID)
	if !ok {
		return
	}
	spec, err := specs.decode(hc.Spec)
	if err != nil {
		d.log.Error("stored command spec is unreadable; not sent", zap.String("command_id", hc.ID), zap.Error(err))
		return
	}
	msg := &flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Command{Command: &flotillav1.Command{
		Id: hc.ID, Deadline: timestamppb.New(hc.Deadline), Spec: spec,
	}}}
	if sess.Send(msg) {
		hc.SentAt = now
	}
}

// specDecoder decodes stored command specs for sending, each distinct one
// once: the hosts of a fleet command share theirs, which a 10,000-host
// command would otherwise decode 10,000 times under the dispatcher's lock.
// The messages share the decoded spec; from then on it is only read
// (marshalled, which is safe concurrently).
type specDecoder struct {
	raw  []byte
	spec *flotillav1.CommandSpec
}

func (c *specDecoder) decode(raw []byte) (*flotillav1.CommandSpec, error) {
	if c.spec != nil && bytes.Equal(c.raw, raw) {
		return c.spec, nil
	}
	spec := &flotillav1.CommandSpec{}
	if err := proto.Unmarshal(raw, spec); err != nil {
		return nil, err
	}
	c.raw, c.spec = raw, spec
	return spec, nil
}

// OnConnect sends every released, unfinished command of an agent that has
// just opened a stream.
func (d *Dispatcher) OnConnect(agentID string) {
	now := d.cfg.Now()
	var specs specDecoder
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, hc := range d.byAgent[agentID] {
		if hc.ReleasedAt.IsZero() {
			continue
		}
		d.sendLocked(hc, now, &specs)
		if reason, ok := d.cancels[hc.ID]; ok {
			d.sendCancelLocked(hc, reason)
		}
	}
}

// unknownEvent handles an event for a command that is not active: usually
// a resent final event after a reconnect.
func (d *Dispatcher) unknownEvent(ctx context.Context, agentID string, ev *flotillav1.CommandEvent) error {
	hc, err := d.cfg.Store.GetHostCommand(ctx, ev.GetCommandId())
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.log.Warn("agent reported a command the control plane does not know; ignored",
			zap.String("agent", agentID), zap.String("command_id", ev.GetCommandId()))
		return nil
	case err != nil:
		return err
	case hc.AgentID != agentID:
		d.log.Warn("agent sent an event for another agent's command; ignored",
			zap.String("agent", agentID), zap.String("command_id", ev.GetCommandId()), zap.String("owner", hc.AgentID))
		return fmt.Errorf("%w: %s is not agent %s's", ErrNotOwner, ev.GetCommandId(), agentID)
	}
	if command.Terminal(ev.GetState()) && flotillav1.CommandState(hc.State) != ev.GetState() {
		// The control plane ended the command first (deadline, lost
		// agent); keep its outcome but record what the agent said.
		d.log.Info("agent reported an outcome for a command already ended by the control plane",
			zap.String("agent", agentID), zap.String("command_id", hc.ID),
			zap.String("recorded", command.StateName(flotillav1.CommandState(hc.State))), zap.String("reported", command.StateName(ev.GetState())),
			zap.String("message", ev.GetMessage()))
	}
	return nil
}

// next returns what ev makes of hc at now: the next state, whether it is
// a change at all, and whether it must be stored before it is applied.
func (d *Dispatcher) next(hc *store.HostCommand, ev *flotillav1.CommandEvent, now time.Time) (next store.HostCommand, changed, persist bool, err error) {
	from, to := flotillav1.CommandState(hc.State), ev.GetState()
	if to == flotillav1.CommandState_COMMAND_STATE_UNSPECIFIED || to == flotillav1.CommandState_COMMAND_STATE_PENDING || command.Rank(to) < command.Rank(from) {
		return store.HostCommand{}, false, false, nil
	}
	next = *hc
	next.State = int32(to)
	if ev.GetMessage() != "" {
		next.Message = ev.GetMessage()
	}
	// A command that succeeded ran, even when its RUNNING event was never
	// seen (an agent's journal may replay only the outcome).
	if (to == flotillav1.CommandState_COMMAND_STATE_RUNNING || to == flotillav1.CommandState_COMMAND_STATE_SUCCEEDED) && next.StartedAt.IsZero() {
		next.StartedAt = now
	}
	if r := ev.GetResult(); r != nil {
		b, err := proto.Marshal(r)
		if err != nil {
			return store.HostCommand{}, false, false, fmt.Errorf("commands: encode result: %w", err)
		}
		next.Result = b
	}
	if command.Terminal(to) {
		next.FinishedAt = now
	}
	// Progress within RUNNING changes only the message: it is broadcast,
	// not stored, so a chatty pull does not write on every layer.
	return next, true, from != to || command.Terminal(to), nil
}

// applyLocked makes next, computed by next and stored if it had to be,
// the state of its command, and returns the update for listeners.
func (d *Dispatcher) applyLocked(next store.HostCommand, ev *flotillav1.CommandEvent) Update {
	hc := d.active[next.ID]
	from, to := flotillav1.CommandState(hc.State), flotillav1.CommandState(next.State)
	setKeepingSent(hc, next)
	if command.Terminal(to) {
		d.untrack(hc)
		d.cfg.Metrics.finished(*hc)
		d.log.Info("command finished", zap.String("command_id", hc.ID), zap.String("agent", hc.AgentID),
			zap.String("kind", hc.Kind), zap.String("state", command.StateName(to)), zap.String("message", hc.Message))
	} else if from != to {
		d.log.Debug("command state changed", zap.String("command_id", hc.ID), zap.String("agent", hc.AgentID),
			zap.String("state", command.StateName(to)))
	}
	return Update{Command: *hc, Event: ev}
}

// setKeepingSent sets *hc to next but keeps a later SentAt: OnConnect may
// resend the command while next is being stored.
func setKeepingSent(hc *store.HostCommand, next store.HostCommand) {
	if hc.SentAt.After(next.SentAt) {
		next.SentAt = hc.SentAt
	}
	*hc = next
}

// Finish ends active host commands from the control plane's side (skipped,
// cancelled before delivery, timed out, agent lost) with state and message.
//
// The commands' new states are stored in one transaction: either all of
// them change or, when the store fails, none does.
func (d *Dispatcher) Finish(ctx context.Context, ids []string, state flotillav1.CommandState, message string) error {
	now := d.cfg.Now()
	at := timestamppb.New(now)
	type change struct {
		next store.HostCommand
		ev   *flotillav1.CommandEvent
	}
	var (
		changes []change
		stored  []store.HostCommand
		seen    = make(map[string]bool, len(ids))
	)
	d.mu.Lock()
	d.waitIdleLocked(ids)
	for _, id := range ids {
		hc, ok := d.active[id]
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		ev := &flotillav1.CommandEvent{CommandId: id, State: state, Message: message, At: at}
		next, changed, persist, err := d.next(hc, ev, now)
		if err != nil {
			d.mu.Unlock()
			return err
		}
		if !changed {
			continue
		}
		changes = append(changes, change{next, ev})
		if persist {
			stored = append(stored, next)
		}
	}
	if err := d.storeLocked(ctx, stored); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("commands: store %d %s commands: %w", len(stored), command.StateName(state), err)
	}
	updates := make([]Update, len(changes))
	for i, c := range changes {
		updates[i] = d.applyLocked(c.next, c.ev)
	}
	d.mu.Unlock()
	d.notify(updates)
	return nil
}

// Cancel asks the agents running these commands to stop. Commands not yet
// accepted by their agent are cancelled at once; the others end when the
// agent reports CANCELLED (or at their deadline).
func (d *Dispatcher) Cancel(ctx context.Context, ids []string, reason string) error {
	undelivered := d.sendCancels(ids, reason)
	return d.Finish(ctx, undelivered, flotillav1.CommandState_COMMAND_STATE_CANCELLED, "cancelled before the agent started it: "+reason)
}

// sendCancels sends CancelCommand for every command that reached its agent
// and returns the IDs still pending (never acknowledged by the agent).
func (d *Dispatcher) sendCancels(ids []string, reason string) (pending []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		hc, ok := d.active[id]
		if !ok {
			continue
		}
		d.cancels[id] = reason
		if !hc.SentAt.IsZero() {
			d.sendCancelLocked(hc, reason)
		}
		if flotillav1.CommandState(hc.State) == flotillav1.CommandState_COMMAND_STATE_PENDING {
			pending = append(pending, id)
		}
	}
	return pending
}

// sendCancelLocked sends CancelCommand if the agent is connected; if not,
// OnConnect sends it after the command when the agent comes back.
func (d *Dispatcher) sendCancelLocked(hc *store.HostCommand, reason string) {
	if sess, online := d.cfg.Registry.SessionFor(hc.AgentID); online {
		sess.Send(&flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Cancel{Cancel: &flotillav1.CancelCommand{
			CommandId: hc.ID, Reason: reason,
		}}})
	}
}

// Get returns an active host command.
func (d *Dispatcher) Get(id string) (store.HostCommand, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	hc, ok := d.active[id]
	if !ok {
		return store.HostCommand{}, false
	}
	return *hc, true
}

// Sweep ends commands whose deadline (plus a grace for the agent's own
// answer) has passed, and commands started on agents that are now lost.
func (d *Dispatcher) Sweep(ctx context.Context) {
	now := d.cfg.Now()
	var timedOut, lost, offline []string
	d.mu.Lock()
	for id, hc := range d.active {
		if hc.ReleasedAt.IsZero() {
			continue
		}
		st := flotillav1.CommandState(hc.State)
		agentState := d.cfg.Registry.State(hc.AgentID)
		switch {
		case st != flotillav1.CommandState_COMMAND_STATE_PENDING && agentState == store.AgentLost:
			lost = append(lost, id)
		case now.After(hc.Deadline.Add(d.cfg.DeadlineGrace)):
			if _, online := d.cfg.Registry.SessionFor(hc.AgentID); online {
				timedOut = append(timedOut, id)
			} else {
				offline = append(offline, id)
			}
		}
	}
	d.mu.Unlock()
	lostAfter := d.cfg.Registry.LostAfter()
	for _, f := range []struct {
		ids   []string
		state flotillav1.CommandState
		msg   string
	}{
		{lost, flotillav1.CommandState_COMMAND_STATE_FAILED, fmt.Sprintf("the agent stopped answering (no heartbeat for %s) while the command ran; its outcome is unknown", lostAfter)},
		{timedOut, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT, "no result from the agent by the deadline"},
		{offline, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT, "the agent was offline until the deadline; the command never ran"},
	} {
		if len(f.ids) == 0 {
			continue
		}
		if f.state == flotillav1.CommandState_COMMAND_STATE_TIMED_OUT {
			d.sendCancels(f.ids, "deadline passed")
		}
		if err := d.Finish(ctx, f.ids, f.state, f.msg); err != nil {
			d.log.Warn("ending overdue commands failed; will retry", zap.Error(err))
		}
	}
}

// Run sweeps every SweepInterval until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			d.Sweep(ctx)
		}
	}
}

// waitIdleLocked returns, with d.mu held, once none of ids has a change
// being stored. It releases d.mu while it waits: the caller reads the
// commands' state after it.
func (d *Dispatcher) waitIdleLocked(ids []string) {
	for {
		var busy chan struct{}
		for _, id := range ids {
			if ch, ok := d.writing[id]; ok {
				busy = ch
				break
			}
		}
		if busy == nil {
			return
		}
		d.mu.Unlock()
		<-busy
		d.mu.Lock()
	}
}

// storeLocked stores the next states of active commands, releasing d.mu
// while the write is in progress so that other commands' changes are
// computed meanwhile and stored with the next batch. The commands are
// marked as being written until the caller, which still holds d.mu when
// storeLocked returns, has applied the changes (or given up on them) and
// unlocked.
func (d *Dispatcher) storeLocked(ctx context.Context, changes []store.HostCommand) error {
	if len(changes) == 0 {
		return nil
	}
	done := make(chan struct{})
	for i := range changes {
		d.writing[changes[i].ID] = done
	}
	d.mu.Unlock()
	err := d.commits.write(ctx, changes)
	d.mu.Lock()
	for i := range changes {
		delete(d.writing, changes[i].ID)
	}
	// Waiters wake up now but need d.mu, which the caller holds until the
	// changes are applied.
	close(done)
	return err
}

func (d *Dispatcher) notify(updates []Update) {
	for _, u := range updates {
		for _, l := range d.listeners {
			l(u)
		}
	}
}
