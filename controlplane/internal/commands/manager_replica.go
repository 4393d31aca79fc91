package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/work"
	"flotilla.dev/pkg/logging"
)

// The Manager in replica mode (see replica.go): a fleet command is driven
// by the replica that holds it (Start, Adopt) until it moves (Forget); the
// other replicas answer GetCommand from the store, WatchCommand from the
// change feed, and store a CancelCommand as a request for the driver.

// errMoved ends the watchers of a command that moved to another replica.
var errMoved = fault.Unavailablef("the command is now driven by another control plane; watch again")

// replica reports whether the Manager runs as one of several replicas.
func (m *Manager) replica() bool { return m.cfg.Dispatcher.cfg.Replica }

// LeaseKind is the kind of the fleet commands' work leases:
// "command/<id>".
const LeaseKind = "command"

// newClaimer builds the claimer of the fleet commands' leases.
func (m *Manager) newClaimer() error {
	if m.cfg.Leases == nil || !m.replica() {
		return errors.New("commands: manager in replica mode (Holder set) needs Leases and a dispatcher in replica mode")
	}
	c, err := work.New(work.Config{
		Store: m.cfg.Leases, Kind: LeaseKind, Holder: m.cfg.Holder, TTL: m.cfg.LeaseTTL,
		Candidates: m.candidates, Start: m.drive, LogField: logging.CommandID,
		Logger: m.log.Named("leases"), Metrics: m.cfg.WorkMetrics,
	})
	if err != nil {
		return fmt.Errorf("commands: %w", err)
	}
	m.claimer = c
	return nil
}

// Run drives, in replica mode, the running fleet commands whose leases
// this replica takes (new ones at once, orphaned ones within a lease TTL
// and a claim interval) until ctx ends; with one control plane it only
// waits for ctx.
func (m *Manager) Run(ctx context.Context) error {
	if m.claimer == nil {
		<-ctx.Done()
		return nil
	}
	return m.claimer.Run(ctx)
}

// candidates lists the running fleet commands.
func (m *Manager) candidates(ctx context.Context) ([]string, error) {
	fcs, err := m.cfg.Store.ListFleetCommands(ctx, store.FleetCommandQuery{States: []int32{int32(flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING)}})
	if err != nil {
		return nil, fmt.Errorf("list running fleet commands: %w", err)
	}
	ids := make([]string, len(fcs))
	for i, fc := range fcs {
		ids[i] = fc.ID
	}
	return ids, nil
}

// drive drives one fleet command under its lease until it ends here:
// finished, or ctx ended (the lease was lost, or the replica stops), when
// it forgets it.
func (m *Manager) drive(ctx context.Context, fcID string, _ store.Lease) {
	if err := m.Adopt(ctx, fcID); err != nil {
		if ctx.Err() == nil {
			m.log.Warn("taking a fleet command over failed; retrying at the next claim", logging.CommandID(fcID), zap.Error(err))
		}
		return
	}
	m.mu.Lock()
	r, ok := m.running[fcID]
	m.mu.Unlock()
	if !ok {
		return // finished
	}
	select {
	case <-r.ended:
	case <-ctx.Done():
		m.Forget(fcID)
	}
}

// claimNew takes the lease of a fleet command just stored, so that its
// claim starts driving it here at once; when that fails, the next claim
// pass of some replica takes it.
func (m *Manager) claimNew(ctx context.Context, fcID string) {
	if _, err := m.claimer.Claim(ctx, fcID); err != nil {
		m.log.Warn("taking the lease of a new fleet command failed; a claim pass will", logging.CommandID(fcID), zap.Error(err))
	}
}

// drives reports whether hc belongs to a fleet command driven here
// (replica mode; a new one is before it is stored).
func (m *Manager) drives(hc store.HostCommand) bool {
	if hc.FleetCommandID == "" {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.running[hc.FleetCommandID]
	return ok
}

// fence returns the fence the writes of a fleet command carry and whether
// this replica drives it: nil and true with one control plane.
func (m *Manager) fence(fcID string) (*store.Fence, bool) {
	if m.claimer == nil {
		return nil, true
	}
	return m.claimer.Fence(fcID)
}

// endLocked stops driving r here: it leaves running, its watchers end
// with err (nil: the command finished) and drive returns. The caller holds
// m.mu.
func (m *Manager) endLocked(fcID string, r *run, err error) {
	if m.running[fcID] == r {
		delete(m.running, fcID)
	}
	for w := range r.watchers {
		w.close(err)
	}
	select {
	case <-r.ended:
	default:
		close(r.ended)
	}
}

// Adopt makes this replica drive a running fleet command read from the
// store: its unfinished hosts join the dispatcher, and it goes on where
// the previous driver stopped. A command already driven here, or
// finished, is left as it is.
func (m *Manager) Adopt(ctx context.Context, fcID string) error {
	m.mu.Lock()
	_, held := m.running[fcID]
	m.mu.Unlock()
	if held {
		return nil
	}
	fc, hcs, err := m.readCommand(ctx, fcID)
	if err != nil {
		return fmt.Errorf("commands: adopt fleet command %s: %w", fcID, err)
	}
	if fc.State != int32(flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING) {
		return nil
	}
	fence, driven := m.fence(fcID)
	if !driven {
		return fmt.Errorf("commands: adopt fleet command %s: its lease %s is not held here", fcID, work.LeaseName(LeaseKind, fcID))
	}
	r, err := newRun(fc, hcs)
	if err != nil {
		return fmt.Errorf("commands: adopt fleet command %s: unreadable request: %w", fcID, err)
	}
	for _, hc := range r.hosts {
		if hc.CancelReason != "" && r.cancelled == "" {
			r.cancelled = hc.CancelReason // the previous driver's cancel
		}
	}
	before := r.cancelled
	m.mu.Lock()
	m.running[fcID] = r
	m.mu.Unlock()
	if m.adopting != nil {
		m.adopting(fcID)
	}
	if err := m.cfg.Dispatcher.Adopt(ctx, hcs, fence); err != nil {
		m.mu.Lock()
		m.endLocked(fcID, r, errMoved)
		m.mu.Unlock()
		return err
	}
	m.log.Info("driving fleet command taken over", logging.CommandID(fcID), zap.Int("hosts", len(hcs)))
	// A cancel that came while the commands were being taken over (an
	// operator's here, or a request the Follower read) found none of them
	// held by the dispatcher yet, and stopped nothing: hand it over now.
	m.mu.Lock()
	reason, released := r.cancelled, r.releasedUnfinished()
	m.mu.Unlock()
	if reason != before {
		if err := m.cfg.Dispatcher.Cancel(ctx, released, reason); err != nil {
			m.log.Warn("cancelling the commands of a fleet command just taken over failed", logging.CommandID(fcID), zap.Error(err))
		}
	}
	// An operator's cancel asked while no replica drove it.
	if requests, err := m.cfg.Store.ListCommandReportsFor(ctx, []string{fcID}); err != nil {
		m.log.Warn("reading the requests stored for a fleet command failed", logging.CommandID(fcID), zap.Error(err))
	} else {
		m.applyRequests(ctx, requests)
	}
	m.advance(ctx, fcID, callerOps{ctx, m.cfg.Dispatcher})
	return nil
}

// Forget stops driving a fleet command here without writing anything: its
// lease moved, another replica goes on with it. Its watchers here are
// told to watch again.
func (m *Manager) Forget(fcID string) {
	m.mu.Lock()
	r, ok := m.running[fcID]
	if ok {
		m.endLocked(fcID, r, errMoved)
	}
	m.mu.Unlock()
	if ok {
		m.cfg.Dispatcher.Forget(r.order)
		m.log.Info("stopped driving fleet command: it moved to another control plane", logging.CommandID(fcID))
	}
}

// Running returns the IDs of the fleet commands driven here.
func (m *Manager) Running() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.running))
	for id := range m.running {
		out = append(out, id)
	}
	return out
}

// requestCancel stores an operator's cancel of a fleet command driven by
// another replica, for its driver (a report with no agent).
func (m *Manager) requestCancel(ctx context.Context, fc store.FleetCommand, reason string) (*flotillav1.FleetCommand, error) {
	b, err := proto.Marshal(&flotillav1.CommandEvent{CommandId: fc.ID, State: flotillav1.CommandState_COMMAND_STATE_CANCELLED,
		Message: reason, At: timestamppb.New(m.cfg.Now())})
	if err != nil {
		return nil, fmt.Errorf("could not encode the cancel of %s", fc.ID)
	}
	err = m.cfg.Store.AddCommandReports(ctx, []store.CommandReport{{CommandID: fc.ID, Event: b, ReceivedAt: m.cfg.Now()}})
	if err != nil {
		return nil, fault.Store("the cancel could not be recorded", err)
	}
	m.log.Info("fleet command cancel requested from its driver", logging.CommandID(fc.ID), zap.String("reason", reason))
	return m.Get(ctx, fc.ID, flotillav1.CommandView_COMMAND_VIEW_FULL)
}

// applyRequests carries out the operators' requests stored by other
// replicas (reports with no agent) for the fleet commands driven here.
func (m *Manager) applyRequests(ctx context.Context, reports []store.CommandReport) {
	for _, r := range reports {
		if r.AgentID != "" {
			continue
		}
		m.mu.Lock()
		run, ok := m.running[r.CommandID]
		todo := ok && run.cancelled == ""
		m.mu.Unlock()
		if !todo {
			continue
		}
		ev := &flotillav1.CommandEvent{}
		if err := proto.Unmarshal(r.Event, ev); err != nil {
			m.log.Warn("stored command request is unreadable; skipped", logging.CommandID(r.CommandID), zap.Error(err))
			continue
		}
		if _, err := m.Cancel(ctx, r.CommandID, ev.GetMessage()); err != nil {
			m.log.Warn("cancelling a fleet command on request failed", logging.CommandID(r.CommandID), zap.Error(err))
		}
	}
}

// watchRemote sends the snapshot of a fleet command driven by another
// replica, read from the store with the seq of its last event at the same
// instant, then every event its driver stored after that seq, in order
// (progress included, as the driver's own watchers get them), until it
// ends (a final snapshot) or ctx ends. It reads the events on every
// wake-up of the feed and every catch-up interval, so that a lost
// notification only delays.
func (m *Manager) watchRemote(ctx context.Context, fcID string, send func(*flotillav1.WatchCommandResponse) error) error {
	var wake <-chan struct{}
	if m.cfg.Feed != nil {
		w, stop := m.cfg.Feed.Subscribe(store.TopicCommands)
		defer stop()
		wake = w
	}
	fc, hcs, last, err := m.cfg.Store.ReadFleetCommand(ctx, fcID)
	if errors.Is(err, store.ErrNotFound) {
		return &fault.NotFoundError{Kind: "command", ID: fcID, Hint: "ListCommands shows recent ones"}
	}
	if err != nil {
		return fault.Store("reading command "+fcID, err)
	}
	r, err := newRun(fc, hcs)
	if err != nil {
		return fmt.Errorf("command %s is unreadable", fcID)
	}
	if err := send(&flotillav1.WatchCommandResponse{Body: &flotillav1.WatchCommandResponse_Snapshot{Snapshot: r.snapshot(true)}}); err != nil {
		return err
	}
	tick := time.NewTicker(DefaultCatchUp)
	defer tick.Stop()
	for {
		ended, err := m.remoteEvents(ctx, fcID, &last, send)
		if err != nil || ended {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-tick.C:
		}
	}
}

// remoteEvents sends the events of fcID after *last and moves *last past
// them; once the command is no longer running and every event it stored
// was sent, it sends the final snapshot and reports true. A store that
// fails is retried at the next wake-up.
func (m *Manager) remoteEvents(ctx context.Context, fcID string, last *int64, send func(*flotillav1.WatchCommandResponse) error) (bool, error) {
	for checkedEnd := false; ; {
		evs, err := m.cfg.Store.ListCommandEvents(ctx, fcID, *last, followPage)
		if err != nil {
			return false, nil
		}
		for _, e := range evs {
			ev := &flotillav1.CommandEvent{}
			if err := proto.Unmarshal(e.Event, ev); err != nil {
				m.log.Warn("stored command event is unreadable; skipped", logging.CommandID(fcID), zap.Int64("seq", e.Seq), zap.Error(err))
			} else if err := send(&flotillav1.WatchCommandResponse{Body: &flotillav1.WatchCommandResponse_Event{
				Event: &flotillav1.HostCommandEvent{AgentId: e.AgentID, Event: ev}}}); err != nil {
				return false, err
			}
			*last = e.Seq
		}
		switch {
		case len(evs) == followPage:
			continue // more to read
		case checkedEnd:
			// Ended, and every event before its end was sent.
			final, err := m.Get(ctx, fcID, flotillav1.CommandView_COMMAND_VIEW_FULL)
			if err != nil {
				return false, err
			}
			return true, send(&flotillav1.WatchCommandResponse{Body: &flotillav1.WatchCommandResponse_Snapshot{Snapshot: final}})
		}
		fc, err := m.cfg.Store.GetFleetCommand(ctx, fcID)
		if err != nil || fc.State == int32(flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING) {
			return false, nil // a store hiccup, or still running: the next wake-up reads again
		}
		// Its end was stored after its hosts' last events: read once
		// more, for those committed since the read above.
		checkedEnd = true
	}
}

// readCommand reads a fleet command and its hosts from the store.
func (m *Manager) readCommand(ctx context.Context, fcID string) (store.FleetCommand, []store.HostCommand, error) {
	fc, err := m.cfg.Store.GetFleetCommand(ctx, fcID)
	if errors.Is(err, store.ErrNotFound) {
		return fc, nil, &fault.NotFoundError{Kind: "command", ID: fcID, Hint: "ListCommands shows recent ones"}
	}
	if err != nil {
		return fc, nil, fault.Store("reading command "+fcID, err)
	}
	hcs, err := m.cfg.Store.ListHostCommands(ctx, fcID)
	if err != nil {
		return fc, nil, fault.Store("reading the hosts of command "+fcID, err)
	}
	return fc, hcs, nil
}
