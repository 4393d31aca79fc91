package rollout_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
)

// A service whose only allowed window is New Year's first minute in
// Kolkata: outside it, a dry run shows the windows closed, a start is
// refused with the next window's start in Kolkata's offset, an override
// needs a reason, and an override with one runs to the end without pausing.
func TestStartOutsideTheWindows(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 2})
	c.start()
	svc := c.service(nil)
	svc.AllowedWindows = []*flotillav1.DeployWindow{{Start: "0 0 1 1 *", Duration: durationpb.New(time.Minute), TimeZone: "Asia/Kolkata"}}
	if _, err := c.engine().PutService(operator(), svc); err != nil {
		t.Fatalf("PutService: %v", err)
	}
	start := func(req *flotillav1.StartRolloutRequest) (*flotillav1.Rollout, error) {
		req.Service, req.Image, req.Strategy = serviceName, newImage, strategy(1)
		return c.engine().StartRollout(operator(), req, "operator:at-1")
	}
	dry, err := start(&flotillav1.StartRolloutRequest{DryRun: true})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if w := dry.GetWindow(); w == nil || w.GetOpen() || w.GetOpensAt() == nil || !strings.Contains(w.GetMessage(), "-01-01T00:00:00+05:30") {
		t.Fatalf("dry run's window = %v, want closed until 1 January 00:00 +05:30", w)
	}
	_, err = start(&flotillav1.StartRolloutRequest{Reason: "release"})
	if !errors.Is(err, fault.ErrPrecondition) || !strings.Contains(err.Error(), "the next window opens at ") ||
		!strings.Contains(err.Error(), "-01-01T00:00:00+05:30") || !strings.Contains(err.Error(), "override_window") {
		t.Fatalf("start outside the windows: %v, want FailedPrecondition with the next window's start", err)
	}
	if _, err := start(&flotillav1.StartRolloutRequest{OverrideWindow: true}); !errors.Is(err, fault.ErrInvalid) ||
		!strings.HasPrefix(err.Error(), "reason: ") {
		t.Fatalf("override without a reason: %v, want InvalidArgument naming reason", err)
	}
	r, err := start(&flotillav1.StartRolloutRequest{OverrideWindow: true, Reason: "hotfix for the checkout outage"})
	if err != nil {
		t.Fatalf("override with a reason: %v", err)
	}
	if !r.GetOverrideWindow() || r.GetWindow().GetOpen() {
		t.Fatalf("overriding rollout: override_window %v, window %v", r.GetOverrideWindow(), r.GetWindow())
	}
	done := c.waitState(r.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED,
		flotillav1.RolloutState_ROLLOUT_STATE_FAILED)
	if done.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED || !done.GetOverrideWindow() || done.GetReason() != "hotfix for the checkout outage" {
		t.Fatalf("overriding rollout ended %s %q, want SUCCEEDED across both batches", done.GetState(), done.GetMessage())
	}
	for _, ev := range []string{"refused", "overridden"} {
		if got := c.metric("flotilla_rollout_window_events_total", "event", ev); got != 1 {
			t.Errorf("flotilla_rollout_window_events_total{event=%q} = %v, want 1", ev, got)
		}
	}
}
