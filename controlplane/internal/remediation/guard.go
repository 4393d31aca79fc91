package remediation

import (
	"fmt"
	"slices"
	"time"
)

// Decision is the guard's answer to a restart a policy asked for.
type Decision struct {
	// Allowed is true when the restart may start now.
	Allowed bool
	// Escalate is true when the host has had its hourly share of
	// restarts and needs another: restarts are not helping, and a person
	// must look.
	Escalate bool
	// Reason says why a restart is not allowed (empty when it is).
	Reason string
	// Rail names the guard rail that stopped it (RailActiveRollout,
	// RailInProgress, RailHourly, RailMaxUnavailable); empty when allowed.
	Rail string
}

// The guard rails, as Decision.Rail and the blocked metric name them.
const (
	RailActiveRollout  = "active_rollout"
	RailInProgress     = "in_progress"
	RailHourly         = "restarts_per_hour"
	RailMaxUnavailable = "max_unavailable"
)

// Guard applies the guard rails of one service's automatic restarts: at
// most RestartsPerHour per host in any hour, at most maxUnavailable hosts
// restarting at once, none while the service has an active rollout. It is
// not safe for concurrent use; one process drives a service's
// remediation at a time (under a work lease).
type Guard struct {
	perHour        int
	maxUnavailable int
	// restarts are the start times of each host's automatic restarts in
	// the last hour.
	restarts map[string][]time.Time
	// inFlight are the hosts being restarted now.
	inFlight map[string]struct{}
}

// NewGuard returns a Guard allowing perHour restarts per host per hour
// and maxUnavailable hosts at once (at least 1).
func NewGuard(perHour, maxUnavailable int) *Guard {
	return &Guard{perHour: perHour, maxUnavailable: max(maxUnavailable, 1),
		restarts: make(map[string][]time.Time), inFlight: make(map[string]struct{})}
}

// Check says whether host may be restarted at now. rolloutActive reports
// an active rollout of the service.
func (g *Guard) Check(host string, now time.Time, rolloutActive bool) Decision {
	if rolloutActive {
		return Decision{Rail: RailActiveRollout, Reason: "the service has an active rollout; automatic restarts wait for it to end"}
	}
	if _, ok := g.inFlight[host]; ok {
		return Decision{Rail: RailInProgress, Reason: "a restart of this host is in progress"}
	}
	recent := g.recent(host, now)
	if len(recent) >= g.perHour {
		return Decision{Escalate: true, Rail: RailHourly, Reason: fmt.Sprintf(
			"restarts are not helping: %d automatic restarts of this host in the last hour (at most %d); not restarting it again until %s",
			len(recent), g.perHour, recent[0].Add(time.Hour).UTC().Format(time.RFC3339))}
	}
	if len(g.inFlight) >= g.maxUnavailable {
		return Decision{Rail: RailMaxUnavailable, Reason: fmt.Sprintf("%d hosts of the service are being restarted (max_unavailable %d)", len(g.inFlight), g.maxUnavailable)}
	}
	return Decision{Allowed: true}
}

// Started records that host's restart started at now; Finished must
// follow.
func (g *Guard) Started(host string, now time.Time) {
	g.restarts[host] = append(g.recent(host, now), now)
	g.inFlight[host] = struct{}{}
}

// Finished records that host's restart ended, however it ended.
func (g *Guard) Finished(host string) { delete(g.inFlight, host) }

// Cancel undoes Started(host, at): the restart did not start.
func (g *Guard) Cancel(host string, at time.Time) {
	delete(g.inFlight, host)
	ts := g.restarts[host]
	if i := slices.IndexFunc(ts, at.Equal); i >= 0 {
		g.restarts[host] = slices.Delete(ts, i, i+1)
	}
}

// WindowStart is the start of host's oldest automatic restart within the
// hour before now (zero when none): an escalation is made once per window.
func (g *Guard) WindowStart(host string, now time.Time) time.Time {
	if r := g.recent(host, now); len(r) > 0 {
		return r[0]
	}
	return time.Time{}
}

// Restore records a restart that started at at, from the audit trail
// after a restart of the control plane or a change of lease holder, so
// that the hourly bound survives them.
func (g *Guard) Restore(host string, at time.Time) {
	ts := append(g.restarts[host], at)
	slices.SortFunc(ts, time.Time.Compare)
	g.restarts[host] = ts
}

// recent are host's restarts within the hour before now, oldest first;
// older ones are forgotten.
func (g *Guard) recent(host string, now time.Time) []time.Time {
	ts := g.restarts[host]
	i := 0
	for i < len(ts) && !ts[i].After(now.Add(-time.Hour)) {
		i++
	}
	if i == len(ts) {
		delete(g.restarts, host)
		return nil
	}
	ts = ts[i:]
	g.restarts[host] = ts
	return ts
}
