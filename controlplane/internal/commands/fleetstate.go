package commands

import (
	"slices"

	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/store"
)

// The state of a running fleet command: its hosts' states, counted by
// phase so that advance costs no scan of the hosts, and the views of it
// (summary and snapshot).

// count adds delta to the count of hc's phase.
func (r *run) count(hc *store.HostCommand, delta int) {
	st := flotillav1.CommandState(hc.State)
	switch {
	case command.Terminal(st):
		r.done += delta
		if failed(st) {
			r.failures += delta
		}
	case hc.ReleasedAt.IsZero():
		r.queued += delta
	default:
		r.inflight += delta
	}
}

// set replaces a host's state, keeping the counts.
func (r *run) set(hc *store.HostCommand, next store.HostCommand) {
	r.count(hc, -1)
	*hc = next
	r.count(hc, 1)
}

// queuedHosts returns the first n queued hosts in order. Hosts leave the
// queue in order (released first to last, or all skipped at once), so the
// scan starts where the queue does.
func (r *run) queuedHosts(n int) []string {
	for r.firstQueued < len(r.order) {
		hc := r.hosts[r.order[r.firstQueued]]
		if hc.ReleasedAt.IsZero() && !command.Terminal(flotillav1.CommandState(hc.State)) {
			break
		}
		r.firstQueued++
	}
	out := make([]string, 0, n)
	for _, id := range r.order[r.firstQueued:] {
		if len(out) == n {
			break
		}
		if hc := r.hosts[id]; hc.ReleasedAt.IsZero() && !command.Terminal(flotillav1.CommandState(hc.State)) {
			out = append(out, id)
		}
	}
	return out
}

// snapshot renders the run, with an entry per host if withHosts; the
// caller holds m.mu.
func (r *run) snapshot(withHosts bool) *flotillav1.FleetCommand {
	out := &flotillav1.FleetCommand{
		Id: r.fc.ID, Spec: r.req.GetSpec(), Selector: r.req.GetSelector(), AgentIds: slices.Clone(r.req.GetAgentIds()),
		MaxConcurrency: r.req.GetMaxConcurrency(), MaxErrors: r.req.GetMaxErrors(), Timeout: r.req.GetTimeout(),
		Reason: r.req.GetReason(), CreatedBy: r.fc.CreatedBy, CreatedAt: ts(r.fc.CreatedAt), FinishedAt: ts(r.fc.FinishedAt),
		State: flotillav1.FleetCommandState(r.fc.State),
	}
	if withHosts {
		out.Hosts = make([]*flotillav1.HostCommand, 0, len(r.order))
		for _, id := range r.order {
			out.Hosts = append(out.Hosts, hostToProto(*r.hosts[id]))
		}
	}
	out.Summary = r.summary()
	return out
}

// summary counts the run's hosts by state name.
func (r *run) summary() map[string]int32 {
	sum := make(map[string]int32)
	for _, hc := range r.hosts {
		sum[command.StateName(flotillav1.CommandState(hc.State))]++
	}
	return sum
}

func hostToProto(hc store.HostCommand) *flotillav1.HostCommand {
	out := &flotillav1.HostCommand{
		AgentId: hc.AgentID, CommandId: hc.ID, State: flotillav1.CommandState(hc.State), Message: hc.Message,
		StartedAt: ts(hc.StartedAt), FinishedAt: ts(hc.FinishedAt), Deadline: ts(hc.Deadline),
	}
	if len(hc.Result) > 0 {
		res := &flotillav1.CommandResult{}
		if proto.Unmarshal(hc.Result, res) == nil {
			out.Result = res
		}
	}
	return out
}
