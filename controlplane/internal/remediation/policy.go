package remediation

import (
	"math"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
)

// The bounds and defaults of a RemediationPolicy's fields.
const (
	DefaultSustainedFor     = 5 * time.Minute
	minSustainedFor         = 10 * time.Second
	maxWindow               = 24 * time.Hour
	minGrowthWindow         = time.Minute
	DefaultMinGrowthPercent = 10.0
	DefaultRestartsPerHour  = 2
	maxRestartsPerHour      = 10
)

// Policy is a validated RemediationPolicy with its defaults filled in.
type Policy struct {
	// PercentOfLimit is the working-set threshold in percent of the
	// limit; 0 when not used.
	PercentOfLimit float64
	// Bytes is the absolute working-set threshold; 0 when not used.
	Bytes uint64
	// SustainedFor is how long a threshold must be exceeded.
	SustainedFor time.Duration
	// GrowthWindow is the steady-growth trigger's window; 0 when not used.
	GrowthWindow time.Duration
	// MinGrowthPercent is the growth the window needs.
	MinGrowthPercent float64
	// RestartsPerHour bounds the automatic restarts of one host.
	RestartsPerHour int
}

// Validate checks a service's remediation policy; field names the policy
// in errors (e.g. "service.remediation").
func Validate(field string, p *flotillav1.RemediationPolicy) error {
	_, err := FromProto(field, p)
	return err
}

// FromProto validates p and fills in its defaults.
func FromProto(field string, p *flotillav1.RemediationPolicy) (Policy, error) {
	out := Policy{PercentOfLimit: p.GetMemoryPercentOfLimit(), Bytes: p.GetMemoryBytes(), SustainedFor: DefaultSustainedFor,
		MinGrowthPercent: DefaultMinGrowthPercent, RestartsPerHour: DefaultRestartsPerHour}
	if pct := out.PercentOfLimit; math.IsNaN(pct) || pct < 0 || pct > 100 {
		return Policy{}, fault.Invalid(field+".memory_percent_of_limit", "must be above 0 and at most 100 (0: not used), got %v", pct)
	}
	if d := p.GetSustainedFor(); d != nil {
		out.SustainedFor = d.AsDuration()
		if out.SustainedFor < minSustainedFor || out.SustainedFor > maxWindow {
			return Policy{}, fault.Invalid(field+".sustained_for", "must be %v to %v, got %v", minSustainedFor, maxWindow, out.SustainedFor)
		}
	}
	if d := p.GetGrowthWindow(); d != nil {
		out.GrowthWindow = d.AsDuration()
		if out.GrowthWindow < minGrowthWindow || out.GrowthWindow > maxWindow {
			return Policy{}, fault.Invalid(field+".growth_window", "must be %v to %v, got %v", minGrowthWindow, maxWindow, out.GrowthWindow)
		}
	}
	if g := p.GetMinGrowthPercent(); g != 0 {
		if math.IsNaN(g) || g < 0 || g > 100 {
			return Policy{}, fault.Invalid(field+".min_growth_percent", "must be above 0 and at most 100 (0: the default %v), got %v", DefaultMinGrowthPercent, g)
		}
		out.MinGrowthPercent = g
	}
	if n := p.GetMaxRestartsPerHostPerHour(); n != 0 {
		if n < 1 || n > maxRestartsPerHour {
			return Policy{}, fault.Invalid(field+".max_restarts_per_host_per_hour", "must be 1 to %d (0: the default %d), got %d", maxRestartsPerHour, DefaultRestartsPerHour, n)
		}
		out.RestartsPerHour = int(n)
	}
	if out.PercentOfLimit == 0 && out.Bytes == 0 && out.GrowthWindow == 0 {
		return Policy{}, fault.Invalid(field, "sets no trigger: give memory_percent_of_limit, memory_bytes or growth_window")
	}
	return out, nil
}
