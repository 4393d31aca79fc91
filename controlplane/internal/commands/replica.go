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
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// Replica mode: several control planes on one database (DispatcherConfig.
// Replica). A host command is owned by the replica that drives its work
// (the fleet command's or the rollout's lease holder): only that
// replica's dispatcher holds it (Adopt, Forget) and changes it. The
// replica holding the agent's stream may be another one:
//
//   - delivery: the Follower hands every host command change to Relay,
//     which sends the released, unfinished commands it does not own to
//     their agents if their stream is here, and their cancels; an agent
//     that attaches gets its active commands owned elsewhere from the
//     store (OnConnect). Sends are deduplicated per stream; a duplicate is
//     harmless (the agent's journal executes a command at most once).
//   - events: an event for a command this dispatcher does not own is
//     appended to command_reports; the owner's Follower reads them and
//     applies them here (ApplyReports), as if the agent had sent them; the
//     reports stored before the owner held the command (relayed as soon as
//     it was stored, or while its work had no driver) are read when it
//     starts holding it (Track, TrackReleased, Adopt).
//
// With one control plane (Replica false) none of this runs: the dispatcher
// holds every active command, as Load reads them.

// relayMark is what was relayed of a command owned elsewhere to the
// stream its agent has here.
type relayMark struct {
	sess      *fleet.Session
	sent      bool // the command
	cancelled bool // its cancel
}

// Adopt makes host commands read from the store (the commands of work this
// replica has just taken over) the dispatcher's own: it tracks them, sends
// the released ones to their agents if their streams are here, with the
// cancels requested, and applies the reports stored about them while
// another replica owned them. Commands already held are left as they are.
// Their writes carry fence, the lease of the work taken over.
func (d *Dispatcher) Adopt(ctx context.Context, hcs []store.HostCommand, fence *store.Fence) error {
	if err := d.do(ctx, &adoptJob{hcs: hcs, fence: fence}); err != nil {
		return fmt.Errorf("commands: adopt: %w", err)
	}
	d.reportsFor(hcs)
	return nil
}

// reportsFor applies the reports already stored about hcs, just tracked:
// another replica may have relayed them and stored their agents' answers
// before this dispatcher held them, and the Follower skipped those. When
// that fails, the Follower reads every report again.
func (d *Dispatcher) reportsFor(hcs []store.HostCommand) {
	ids := make([]string, 0, len(hcs))
	for i := range hcs {
		if !hcs[i].ReleasedAt.IsZero() && hcs[i].FinishedAt.IsZero() {
			ids = append(ids, hcs[i].ID) // only a released command has been answered
		}
	}
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reports, err := d.cfg.Store.ListCommandReportsFor(ctx, ids)
	if err == nil {
		err = d.ApplyReports(ctx, reports)
	}
	if err != nil {
		d.log.Warn("reading the reports of commands just tracked failed; all reports will be read again", zap.Error(err))
		d.rescanReports.Store(true)
	}
}

// Forget drops host commands from the dispatcher without writing anything:
// their work moved to another replica, which goes on with them.
func (d *Dispatcher) Forget(ids []string) {
	_ = d.do(context.Background(), &forgetJob{cmds: ids})
}

// Relay delivers changes of host commands other replicas own to the agents
// whose streams are here (see Replica mode above).
func (d *Dispatcher) Relay(hcs []store.HostCommand) {
	_ = d.do(context.Background(), &relayJob{hcs: hcs})
}

// ApplyReports applies reports other replicas stored for the commands
// this dispatcher owns, in order; reports about other commands, and
// events a report's agent may not send, are skipped. It fails when one of
// the changes could not be stored (nothing of that report is applied;
// applying a report twice is harmless).
func (d *Dispatcher) ApplyReports(ctx context.Context, reports []store.CommandReport) error {
	jobs := make([]job, 0, len(reports))
	for _, r := range reports {
		if r.AgentID == "" {
			continue // an operator's request, for the Manager
		}
		ev := &flotillav1.CommandEvent{}
		if err := proto.Unmarshal(r.Event, ev); err != nil || ev.GetCommandId() != r.CommandID {
			d.log.Warn("stored command report is unreadable; skipped", logging.CommandID(r.CommandID), zap.Int64("seq", r.Seq), zap.Error(err))
			continue
		}
		jobs = append(jobs, &eventJob{agentID: r.AgentID, ev: ev})
	}
	for _, err := range d.doAll(ctx, jobs) {
		if err != nil && !errors.Is(err, ErrNotOwner) {
			return fmt.Errorf("commands: apply reports: %w", err)
		}
	}
	return nil
}

// rescan reports whether the reports must be read again from the first
// (see reportsFor), and clears the request.
func (d *Dispatcher) rescan() bool { return d.rescanReports.Swap(false) }

// report stores an event about a command this dispatcher does not own,
// for its owner, when the command is the agent's and still active.
func (d *Dispatcher) report(ctx context.Context, agentID string, hc store.HostCommand, ev *flotillav1.CommandEvent) error {
	b, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("commands: encode event for %s: %w", hc.ID, err)
	}
	r := store.CommandReport{CommandID: hc.ID, AgentID: agentID, Event: b, ReceivedAt: d.cfg.Now()}
	if err := d.cfg.Store.AddCommandReports(ctx, []store.CommandReport{r}); err != nil {
		return fmt.Errorf("commands: forward event for %s: %w", hc.ID, err)
	}
	return nil
}

// connectReplica sends an agent that just attached its active commands
// owned by other replicas, read from the store.
func (d *Dispatcher) connectReplica(agentID string) {
	hcs, err := d.cfg.Store.ListAgentActiveHostCommands(context.Background(), agentID)
	if err != nil {
		d.log.Warn("reading an attached agent's commands failed; they reach it with their next change", logging.AgentID(agentID), zap.Error(err))
		return
	}
	if len(hcs) > 0 {
		d.Relay(hcs)
	}
}

// doAll queues jobs at once and waits for every outcome, returned in the
// order of jobs. Jobs about one command run in the order given.
func (d *Dispatcher) doAll(ctx context.Context, jobs []job) []error {
	if len(jobs) == 0 {
		return nil
	}
	errs := make([]error, len(jobs))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	reqs := make([]*request, len(jobs))
	for i, j := range jobs {
		reqs[i] = &request{job: j, done: make(chan struct{})}
	}
	d.inbox.mu.Lock()
	d.inbox.queue = append(d.inbox.queue, reqs...)
	start := !d.inbox.running
	d.inbox.running = true
	d.inbox.mu.Unlock()
	if start {
		go d.own()
	}
	for i, r := range reqs {
		<-r.done
		errs[i] = r.err
	}
	return errs
}

// adoptJob tracks commands taken over from the store (see Adopt).
type adoptJob struct {
	hcs   []store.HostCommand
	fence *store.Fence
}

func (j *adoptJob) ids() []string                 { return nil }
func (j *adoptJob) prepare(*turn, *request) error { return nil }

func (j *adoptJob) apply(t *turn, _ *request) {
	d := t.d
	for i := range j.hcs {
		if _, held := d.active[j.hcs[i].ID]; held || !j.hcs[i].FinishedAt.IsZero() {
			continue
		}
		hc := j.hcs[i]
		delete(d.relayed, hc.ID)
		t.hold(&hc, j.fence)
	}
}

// forgetJob drops commands whose work moved (see Forget).
type forgetJob struct{ cmds []string }

func (j *forgetJob) ids() []string { return j.cmds }

// prepare marks the commands changed: a later request of the turn about
// one of them (an event) waits for the next turn, where it finds the
// command gone, rather than be applied to it once it is.
func (j *forgetJob) prepare(t *turn, _ *request) error {
	for _, id := range j.cmds {
		t.changed[id] = true
	}
	return nil
}

func (j *forgetJob) apply(t *turn, _ *request) {
	for _, id := range j.cmds {
		if hc, ok := t.d.active[id]; ok {
			t.d.untrack(hc)
			t.d.cfg.Metrics.inFlight(hc.Kind, -1)
		}
	}
}

// relayJob delivers changes of commands owned elsewhere (see Relay).
type relayJob struct{ hcs []store.HostCommand }

func (j *relayJob) ids() []string                 { return nil }
func (j *relayJob) prepare(*turn, *request) error { return nil }

func (j *relayJob) apply(t *turn, _ *request) {
	d := t.d
	for i := range j.hcs {
		hc := &j.hcs[i]
		sess, here := d.cfg.Registry.SessionFor(hc.AgentID)
		if here && d.owns(hc) {
			continue
		}
		mark, marked := d.relayed[hc.ID]
		if !here || (!hc.FinishedAt.IsZero() && (hc.CancelReason == "" || !mark.sent)) {
			// Not ours to deliver, or over: a finished command gets only
			// the cancel of one this stream was sent.
			delete(d.relayed, hc.ID)
			continue
		}
		if !marked || mark.sess != sess {
			mark = relayMark{sess: sess}
		}
		if !mark.sent && !hc.ReleasedAt.IsZero() && hc.FinishedAt.IsZero() {
			t.send(hc)
			mark.sent = true
		}
		if hc.CancelReason != "" && mark.sent && !mark.cancelled {
			d.sendCancel(hc, hc.CancelReason)
			mark.cancelled = true
		}
		if hc.FinishedAt.IsZero() {
			d.relayed[hc.ID] = mark
		} else {
			delete(d.relayed, hc.ID)
		}
	}
}

// owns reports whether hc is this dispatcher's: held, or of work driven
// here (stored, about to be tracked).
func (d *Dispatcher) owns(hc *store.HostCommand) bool {
	if _, held := d.active[hc.ID]; held {
		return true
	}
	for _, driven := range d.drivenHere {
		if driven(*hc) {
			return true
		}
	}
	return false
}

// cancelChanges adds to r, for each active command of ids, the change that
// stores reason as its requested cancel (replica mode: the replica holding
// its agent's stream delivers it from the store).
func (t *turn) cancelChanges(r *request, ids []string, reason string) {
	at := timestamppb.New(t.now)
	for _, id := range ids {
		hc, ok := t.d.active[id]
		if !ok || hc.CancelReason != "" || t.changed[id] {
			continue
		}
		next := *hc
		next.CancelReason = reason
		ev := &flotillav1.CommandEvent{CommandId: id, State: flotillav1.CommandState(hc.State), Message: "cancel requested: " + reason, At: at}
		r.changes = append(r.changes, change{next: next, ev: ev, persist: true})
		t.changed[id] = true
	}
}

// withCancelReason sets reason as the requested cancel of r's changes from
// the from-th on that end their command (replica mode: so that the agent,
// wherever its stream is, is told to stop).
func withCancelReason(r *request, from int, reason string) {
	for k := from; k < len(r.changes); k++ {
		if command.Terminal(flotillav1.CommandState(r.changes[k].next.State)) {
			r.changes[k].next.CancelReason = reason
		}
	}
}
