package remediation

import (
	"fmt"
	"math"
	"time"
)

// Reading is one heartbeat's figures of a container.
type Reading struct {
	// At is when the agent took the reading.
	At time.Time
	// WorkingSet and Limit are the memory working set and limit, bytes;
	// Limit is 0 for a container without one.
	WorkingSet, Limit uint64
	// StartedAt is when the container's current run started.
	StartedAt time.Time
	// OOMKills is the agent's count of the container's OOM kills.
	OOMKills uint64
}

// The triggers, as Trigger.Reason and the restart metric name them.
const (
	ReasonThreshold = "threshold"
	ReasonGrowth    = "growth"
)

// Trigger is a policy's verdict that a container needs a restart.
type Trigger struct {
	// Reason is "threshold" or "growth".
	Reason string
	// Evidence says what was measured, for the audit, the event and the
	// notification.
	Evidence string
}

// minGrowthCorrelation is how strongly the working set must correlate
// with time over the window to count as steady growth: a sawtooth of
// garbage collections correlates weakly, a leak strongly.
const minGrowthCorrelation = 0.9

// Detector follows one container's readings and says when its policy
// calls for a restart. A new run of the container (another StartedAt)
// starts its history again. It is not safe for concurrent use.
type Detector struct {
	policy Policy
	// history holds the readings of the current run within the longest
	// window the policy looks at.
	history []Reading
	// aboveSince is when the working set last went above the threshold;
	// zero while below.
	aboveSince time.Time
}

// NewDetector returns a Detector for p.
func NewDetector(p Policy) *Detector { return &Detector{policy: p} }

// Observe adds a reading and reports whether the container needs a
// restart now. Readings out of order are ignored.
func (d *Detector) Observe(r Reading) (Trigger, bool) {
	if n := len(d.history); n > 0 {
		last := d.history[n-1]
		if !r.StartedAt.Equal(last.StartedAt) {
			d.history, d.aboveSince = nil, time.Time{}
		} else if !r.At.After(last.At) {
			return Trigger{}, false
		}
	}
	d.history = append(d.history, r)
	d.trim(r.At)
	if t, ok := d.threshold(r); ok {
		return t, true
	}
	return d.growth(r)
}

// trim drops the readings older than the policy's longest window.
func (d *Detector) trim(now time.Time) {
	keep := max(d.policy.SustainedFor, d.policy.GrowthWindow)
	i := 0
	// Keep one reading at or before the window's start, so that a window
	// covered exactly is seen as covered.
	for i+1 < len(d.history) && !d.history[i+1].At.After(now.Add(-keep)) {
		i++
	}
	d.history = d.history[i:]
}

// threshold applies the threshold triggers.
func (d *Detector) threshold(r Reading) (Trigger, bool) {
	limitBytes, what := d.thresholdBytes(r.Limit)
	if limitBytes == 0 || r.WorkingSet <= limitBytes {
		d.aboveSince = time.Time{}
		return Trigger{}, false
	}
	if d.aboveSince.IsZero() {
		d.aboveSince = r.At
	}
	above := r.At.Sub(d.aboveSince)
	if above < d.policy.SustainedFor {
		return Trigger{}, false
	}
	return Trigger{Reason: ReasonThreshold, Evidence: fmt.Sprintf("working set %s above %s (%s) for %v",
		mib(r.WorkingSet), mib(limitBytes), what, above.Round(time.Second))}, true
}

// thresholdBytes is the lower of the policy's thresholds that applies to
// a container with this limit, and how it was set; 0 when none applies.
func (d *Detector) thresholdBytes(limit uint64) (uint64, string) {
	var best uint64
	var what string
	if p := d.policy.PercentOfLimit; p > 0 && limit > 0 {
		best, what = uint64(float64(limit)*p/100), fmt.Sprintf("%g%% of the %s limit", p, mib(limit))
	}
	if b := d.policy.Bytes; b > 0 && (best == 0 || b < best) {
		best, what = b, "memory_bytes"
	}
	return best, what
}

// growth applies the steady-growth trigger: readings covering the whole
// window, strongly correlated with time, growing by at least the
// policy's share of the limit (of the first reading without a limit).
func (d *Detector) growth(r Reading) (Trigger, bool) {
	w := d.policy.GrowthWindow
	if w == 0 || len(d.history) < 3 {
		return Trigger{}, false
	}
	first := d.history[0]
	if r.At.Sub(first.At) < w {
		return Trigger{}, false
	}
	base := r.Limit
	if base == 0 {
		base = first.WorkingSet
	}
	if r.WorkingSet <= first.WorkingSet || base == 0 {
		return Trigger{}, false
	}
	grown := float64(r.WorkingSet-first.WorkingSet) / float64(base) * 100
	corr := correlation(d.history)
	if grown < d.policy.MinGrowthPercent || corr < minGrowthCorrelation {
		return Trigger{}, false
	}
	return Trigger{Reason: ReasonGrowth, Evidence: fmt.Sprintf("working set grew from %s to %s over %v (%.1f%% of %s; correlation with time %.2f)",
		mib(first.WorkingSet), mib(r.WorkingSet), r.At.Sub(first.At).Round(time.Second), grown, baseName(r.Limit), corr)}, true
}

// correlation is the Pearson correlation of the working set with time.
func correlation(rs []Reading) float64 {
	n := float64(len(rs))
	t0 := rs[0].At
	var sx, sy, sxx, syy, sxy float64
	for _, r := range rs {
		x, y := r.At.Sub(t0).Seconds(), float64(r.WorkingSet)
		sx, sy, sxx, syy, sxy = sx+x, sy+y, sxx+x*x, syy+y*y, sxy+x*y
	}
	den := math.Sqrt(n*sxx-sx*sx) * math.Sqrt(n*syy-sy*sy)
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

func baseName(limit uint64) string {
	if limit > 0 {
		return "the " + mib(limit) + " limit"
	}
	return "the first reading"
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// RestartKind says why a container's run changed between two readings.
type RestartKind int

// The kinds of restart Classify tells apart.
const (
	// NoRestart: the same run.
	NoRestart RestartKind = iota
	// OOMKill: the kernel killed the previous run for lack of memory.
	OOMKill
	// Planned: a restart someone asked for (a rollout, an operator, an
	// automatic remediation), the previous run not killed for memory.
	Planned
	// Crash: the previous run ended otherwise and Docker restarted it.
	Crash
)

// Classify tells an OOM kill from a planned restart: the run changed
// (StartedAt) and the agent counted a new OOM kill, or the change was
// planned (planned reports whether Flotilla restarted the container
// between the readings), or else it crashed.
func Classify(prev, cur Reading, planned bool) RestartKind {
	switch {
	case cur.StartedAt.Equal(prev.StartedAt):
		return NoRestart
	case cur.OOMKills > prev.OOMKills:
		return OOMKill
	case planned:
		return Planned
	default:
		return Crash
	}
}
