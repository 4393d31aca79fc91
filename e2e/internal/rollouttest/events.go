package rollouttest

import (
	"fmt"
	"strings"
	"time"

	"flotilla.dev/e2e/internal/grpcurl"
)

// HostSteps are the steps a host went through, in order, in the forward
// pass or in its rollback.
func HostSteps(events []grpcurl.RolloutEvent, agentID string, rollingBack bool) []string {
	var out []string
	for _, e := range events {
		if h := e.Event.Host; h != nil && h.AgentID == agentID && h.RollingBack == rollingBack {
			out = append(out, h.Step)
		}
	}
	return out
}

// eventLines renders a rollout's events one a line, timed from began:
// "+1.2s #5 host e2e-web-1-… DRAINING: draining 127.0.0.1:8080 …".
func eventLines(events []grpcurl.RolloutEvent, began time.Time) string {
	var b strings.Builder
	for _, e := range events {
		ev := e.Event
		fmt.Fprintf(&b, "  +%-6s #%-3s ", ev.At.Sub(began).Round(100*time.Millisecond), ev.Sequence)
		switch {
		case ev.State != nil:
			fmt.Fprintf(&b, "rollout %s: %s", strings.TrimPrefix(ev.State.State, "ROLLOUT_STATE_"), ev.State.Message)
		case ev.Batch != nil:
			fmt.Fprintf(&b, "batch %d started=%v finished=%v: %s", ev.Batch.Index, ev.Batch.Started, ev.Batch.Finished, ev.Batch.Message)
		case ev.Host != nil:
			rb := ""
			if ev.Host.RollingBack {
				rb = " (rollback)"
			}
			fmt.Fprintf(&b, "host %s %s%s: %s", ev.Host.AgentID, strings.TrimPrefix(ev.Host.Step, "HOST_STEP_"), rb, ev.Host.Message)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// stepTimeline renders a host's steps with how long each lasted, e.g.
// "DRAINING 0.2s → RESTARTING 2.1s → … → DONE (total 5.4s)".
func stepTimeline(events []grpcurl.RolloutEvent, agentID string) string {
	var parts []string
	var first, prev time.Time
	for _, e := range events {
		h := e.Event.Host
		if h == nil || h.AgentID != agentID {
			continue
		}
		if !prev.IsZero() {
			parts[len(parts)-1] += " " + e.Event.At.Sub(prev).Round(100*time.Millisecond).String()
		} else {
			first = e.Event.At
		}
		step := strings.TrimPrefix(h.Step, "HOST_STEP_")
		if h.RollingBack {
			step = "rollback:" + step
		}
		parts = append(parts, step)
		prev = e.Event.At
	}
	if len(parts) == 0 {
		return "untouched"
	}
	return fmt.Sprintf("%s (total %s)", strings.Join(parts, " → "), prev.Sub(first).Round(100*time.Millisecond))
}
