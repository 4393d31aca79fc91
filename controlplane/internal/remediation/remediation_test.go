package remediation

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
)

var t0 = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)

func TestFromProto(t *testing.T) {
	p, err := FromProto("service.remediation", &flotillav1.RemediationPolicy{MemoryPercentOfLimit: 90})
	if err != nil {
		t.Fatal(err)
	}
	if p.SustainedFor != DefaultSustainedFor || p.RestartsPerHour != DefaultRestartsPerHour || p.MinGrowthPercent != DefaultMinGrowthPercent {
		t.Errorf("defaults not filled in: %+v", p)
	}
	for _, tc := range []struct {
		policy *flotillav1.RemediationPolicy
		field  string
	}{
		{&flotillav1.RemediationPolicy{}, "service.remediation"},
		{&flotillav1.RemediationPolicy{MemoryPercentOfLimit: 120}, "service.remediation.memory_percent_of_limit"},
		{&flotillav1.RemediationPolicy{MemoryBytes: 1 << 30, SustainedFor: durationpb.New(time.Second)}, "service.remediation.sustained_for"},
		{&flotillav1.RemediationPolicy{GrowthWindow: durationpb.New(30 * time.Second)}, "service.remediation.growth_window"},
		{&flotillav1.RemediationPolicy{MemoryBytes: 1, MinGrowthPercent: -1}, "service.remediation.min_growth_percent"},
		{&flotillav1.RemediationPolicy{MemoryBytes: 1, MaxRestartsPerHostPerHour: 11}, "service.remediation.max_restarts_per_host_per_hour"},
	} {
		err := Validate("service.remediation", tc.policy)
		var ve *fault.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("Validate(%v) = %v, want an error naming %s", tc.policy, err, tc.field)
		}
	}
}

// readings makes one reading a minute from t0 of a run started at t0.
func readings(workingSets ...uint64) []Reading {
	out := make([]Reading, len(workingSets))
	for i, ws := range workingSets {
		out[i] = Reading{At: t0.Add(time.Duration(i) * time.Minute), WorkingSet: ws << 20, Limit: 100 << 20, StartedAt: t0}
	}
	return out
}

// firstTrigger feeds rs to d and returns the index of the first reading
// that triggered, or -1.
func firstTrigger(d *Detector, rs []Reading) (int, Trigger) {
	for i, r := range rs {
		if tr, ok := d.Observe(r); ok {
			return i, tr
		}
	}
	return -1, Trigger{}
}

func TestThresholdMustBeSustained(t *testing.T) {
	p := Policy{PercentOfLimit: 90, SustainedFor: 3 * time.Minute}
	// Above at 2, a dip at 4 restarts the clock, above again from 5: the
	// trigger comes 3 minutes later, at 8.
	i, tr := firstTrigger(NewDetector(p), readings(50, 80, 95, 96, 85, 95, 96, 97, 98, 99))
	if i != 8 || tr.Reason != "threshold" || !strings.Contains(tr.Evidence, "above 90.0 MiB (90% of the 100.0 MiB limit) for 3m0s") {
		t.Fatalf("triggered at %d with %+v, want at 8 by the threshold", i, tr)
	}
	// Without a limit the percentage never applies; an absolute size does.
	noLimit := readings(95, 96, 97, 98, 99)
	for i := range noLimit {
		noLimit[i].Limit = 0
	}
	if i, _ := firstTrigger(NewDetector(p), noLimit); i != -1 {
		t.Errorf("a container without a limit triggered a percent-of-limit policy at %d", i)
	}
	if i, tr := firstTrigger(NewDetector(Policy{Bytes: 90 << 20, SustainedFor: 2 * time.Minute}), noLimit); i != 2 || !strings.Contains(tr.Evidence, "memory_bytes") {
		t.Errorf("absolute threshold triggered at %d (%+v), want 2", i, tr)
	}
}

func TestNewRunStartsAgain(t *testing.T) {
	d := NewDetector(Policy{PercentOfLimit: 90, SustainedFor: 2 * time.Minute})
	rs := readings(95, 95, 95, 95)
	rs[2].StartedAt = t0.Add(2 * time.Minute) // restarted: history and clock start again
	rs[3].StartedAt = rs[2].StartedAt
	if i, _ := firstTrigger(d, rs); i != -1 {
		t.Errorf("triggered at %d across a restart", i)
	}
}

func TestSteadyGrowth(t *testing.T) {
	p := Policy{GrowthWindow: 10 * time.Minute, MinGrowthPercent: 10}
	// A leak: 2 MiB a minute with a little noise.
	leak := readings(20, 23, 24, 27, 28, 31, 32, 35, 36, 39, 40, 43)
	i, tr := firstTrigger(NewDetector(p), leak)
	if i != 10 || tr.Reason != "growth" {
		t.Fatalf("leak triggered at %d (%+v), want 10 (the window covered)", i, tr)
	}
	// A garbage-collected sawtooth ends higher than it started but does not
	// grow steadily.
	saw := readings(20, 40, 22, 41, 21, 40, 23, 41, 22, 40, 31, 39)
	if i, tr := firstTrigger(NewDetector(p), saw); i != -1 {
		t.Errorf("sawtooth triggered at %d: %+v", i, tr)
	}
	// Steady but small growth (5% of the limit) is below min_growth_percent.
	slow := readings(20, 20, 21, 21, 22, 22, 23, 23, 24, 24, 25, 25)
	if i, tr := firstTrigger(NewDetector(p), slow); i != -1 {
		t.Errorf("slow growth triggered at %d: %+v", i, tr)
	}
}

func TestClassify(t *testing.T) {
	prev := Reading{StartedAt: t0, OOMKills: 1}
	for _, tc := range []struct {
		name    string
		cur     Reading
		planned bool
		want    RestartKind
	}{
		{"same run", Reading{StartedAt: t0, OOMKills: 1}, false, NoRestart},
		{"OOM kill, even during a planned restart", Reading{StartedAt: t0.Add(time.Minute), OOMKills: 2}, true, OOMKill},
		{"planned", Reading{StartedAt: t0.Add(time.Minute), OOMKills: 1}, true, Planned},
		{"crash", Reading{StartedAt: t0.Add(time.Minute), OOMKills: 1}, false, Crash},
		{"agent restarted (its count reset)", Reading{StartedAt: t0.Add(time.Minute)}, false, Crash},
	} {
		if got := Classify(prev, tc.cur, tc.planned); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestGuard(t *testing.T) {
	g := NewGuard(2, 1)
	if d := g.Check("h1", t0, true); d.Allowed || !strings.Contains(d.Reason, "active rollout") {
		t.Errorf("during a rollout: %+v", d)
	}
	if d := g.Check("h1", t0, false); !d.Allowed {
		t.Fatalf("first restart refused: %+v", d)
	}
	g.Started("h1", t0)
	if d := g.Check("h2", t0, false); d.Allowed || !strings.Contains(d.Reason, "max_unavailable 1") {
		t.Errorf("second host while one restarts: %+v", d)
	}
	if d := g.Check("h1", t0, false); d.Allowed {
		t.Errorf("the host being restarted allowed again: %+v", d)
	}
	g.Finished("h1")
	g.Started("h1", t0.Add(10*time.Minute))
	g.Finished("h1")
	d := g.Check("h1", t0.Add(20*time.Minute), false)
	if d.Allowed || !d.Escalate || !strings.HasPrefix(d.Reason, "restarts are not helping: 2 automatic restarts") {
		t.Errorf("third restart within the hour: %+v", d)
	}
	if d := g.Check("h2", t0.Add(20*time.Minute), false); !d.Allowed {
		t.Errorf("another host is bounded by h1's restarts: %+v", d)
	}
	// An hour after the first restart, one slot is free again.
	if d := g.Check("h1", t0.Add(61*time.Minute), false); !d.Allowed {
		t.Errorf("an hour later: %+v", d)
	}
	// Restored history (a new lease holder) counts.
	g2 := NewGuard(1, 3)
	g2.Restore("h1", t0.Add(-30*time.Minute))
	if d := g2.Check("h1", t0, false); !d.Escalate {
		t.Errorf("restored restart not counted: %+v", d)
	}
}
