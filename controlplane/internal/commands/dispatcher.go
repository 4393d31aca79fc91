package commands

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

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

// Listener receives updates. Listeners are called on the dispatcher's own
// goroutine, in the order the changes were made, once they are stored:
// a listener must not block for long and must not call the Dispatcher
// (that would wait for the goroutine that is calling it).
type Listener func(Update)

// hostOps is what a listener inside the package may ask of the dispatcher
// in answer to an update (the Manager releases and skips hosts): the
// requests run after the current turn, before the callers whose requests
// caused the update return. Outside a listener, callerOps does the same by
// calling the Dispatcher.
type hostOps interface {
	release(ids []string, timeout time.Duration, then func(error))
	finish(ids []string, state flotillav1.CommandState, message string, then func(error))
}

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
	// Replica runs the dispatcher as one of several control planes on one
	// database (see replica.go): it holds only the commands it is given
	// (Track, Adopt), stores requested cancels, relays commands owned
	// elsewhere to the agents whose streams are here, and stores events
	// about those commands for their owner. Load is not used then.
	Replica bool
}

// Dispatcher delivers host commands to agents and tracks their outcome.
// Its state belongs to one goroutine (see loop.go); its methods queue
// requests for it and wait for their outcome.
type Dispatcher struct {
	cfg DispatcherConfig
	log *zap.Logger

	inbox inbox
	// listeners is set before serving and only read afterwards.
	listeners []func(Update, *turn)
	// drivenHere, set before serving, tell whether a host command's work
	// is driven here (replica mode): the relay leaves those to this
	// dispatcher even before they are tracked.
	drivenHere []func(store.HostCommand) bool

	// Owned by the goroutine taking the inbox: only jobs touch these.
	active  map[string]*store.HostCommand
	byAgent map[string]map[string]*store.HostCommand
	// cancels holds the reason of every cancel requested for an active
	// command, so that an agent that was away when it was requested gets
	// it after the command on its next stream.
	cancels map[string]string
	// relayed: what was relayed of commands owned elsewhere (replica mode).
	relayed map[string]relayMark
	// fences holds the fence of every active command tracked under one
	// (replica mode: its work's lease), by command ID; its writes carry it.
	fences map[string]*store.Fence
	turn   turn // reused by each turn

	// rescanReports asks the Follower to read the reports from the first
	// again (replica mode; set by Adopt).
	rescanReports atomic.Bool
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
		active:  make(map[string]*store.HostCommand),
		byAgent: make(map[string]map[string]*store.HostCommand),
		cancels: make(map[string]string),
		relayed: make(map[string]relayMark),
		fences:  make(map[string]*store.Fence),
	}, nil
}

// Listen adds a listener; call before serving.
func (d *Dispatcher) Listen(l Listener) {
	d.listeners = append(d.listeners, func(u Update, _ *turn) { l(u) })
}

// listen adds a listener that may answer an update with more requests.
func (d *Dispatcher) listen(l func(Update, hostOps)) {
	d.listeners = append(d.listeners, func(u Update, t *turn) { l(u, t) })
}

// Load reads the unfinished host commands from the store.
func (d *Dispatcher) Load(ctx context.Context) error {
	hcs, err := d.cfg.Store.ListActiveHostCommands(ctx)
	if err != nil {
		return fmt.Errorf("commands: load active commands: %w", err)
	}
	return d.do(ctx, &trackJob{hcs: hcs})
}

// Track adds host commands that were just created in the store (queued or
// released), or read from it, to the dispatcher; the released ones are
// sent to their agents whose streams are here (see trackJob). Every later
// write of them carries fence
// (their work's lease in replica mode; nil writes unconditionally): once
// the store refuses it, the dispatcher drops them (see commit).
func (d *Dispatcher) Track(hcs []store.HostCommand, fence *store.Fence) {
	_ = d.do(context.Background(), &trackJob{hcs: hcs, fence: fence})
	if d.cfg.Replica {
		d.reportsFor(hcs)
	}
}

// TrackReleased adds host commands that were just created in the store,
// some of them already released (stored with their deadline and message,
// as Release would have stored them): those are sent to their agents and
// reported to listeners as Release reports them. Creating commands
// released spares each of them a second write before its agent can start.
// Their writes carry fence, as Track's.
func (d *Dispatcher) TrackReleased(hcs []store.HostCommand, fence *store.Fence) {
	_ = d.do(context.Background(), &trackJob{hcs: hcs, sendReleased: true, fence: fence})
	if d.cfg.Replica {
		d.reportsFor(hcs)
	}
}

// Release gives queued host commands their turn: each gets a deadline of
// now+timeout, is stored, then sent if its agent is connected. An offline
// agent's command waits for it until the deadline.
func (d *Dispatcher) Release(ctx context.Context, ids []string, timeout time.Duration) error {
	if err := d.do(ctx, &releaseJob{cmds: ids, timeout: timeout}); err != nil {
		return fmt.Errorf("commands: release: %w", err)
	}
	return nil
}

// Finish ends active host commands from the control plane's side (skipped,
// cancelled before delivery, timed out, agent lost) with state and message.
//
// The commands' new states are stored in one transaction: either all of
// them change or, when the store fails, none does.
func (d *Dispatcher) Finish(ctx context.Context, ids []string, state flotillav1.CommandState, message string) error {
	return d.do(ctx, &finishJob{cmds: ids, state: state, message: message})
}

// Cancel asks the agents running these commands to stop. Commands not yet
// accepted by their agent are cancelled at once; the others end when the
// agent reports CANCELLED (or at their deadline).
func (d *Dispatcher) Cancel(ctx context.Context, ids []string, reason string) error {
	return d.do(ctx, &cancelJob{cmds: ids, reason: reason})
}

// OnConnect sends every released, unfinished command of an agent that has
// just opened a stream, and the cancels it missed; in replica mode also
// those owned by other replicas.
func (d *Dispatcher) OnConnect(agentID string) {
	_ = d.do(context.Background(), &connectJob{agentID: agentID})
	if d.cfg.Replica {
		d.connectReplica(agentID)
	}
}

// Get returns an active host command.
func (d *Dispatcher) Get(id string) (store.HostCommand, bool) {
	j := &getJob{id: id}
	_ = d.do(context.Background(), j)
	return j.hc, j.ok
}

// callerOps makes the hostOps requests of a caller outside the listeners:
// it calls the Dispatcher and waits.
type callerOps struct {
	ctx context.Context
	d   *Dispatcher
}

func (o callerOps) release(ids []string, timeout time.Duration, then func(error)) {
	then(o.d.Release(o.ctx, ids, timeout))
}

func (o callerOps) finish(ids []string, state flotillav1.CommandState, message string, then func(error)) {
	then(o.d.Finish(o.ctx, ids, state, message))
}
