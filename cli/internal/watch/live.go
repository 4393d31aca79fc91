package watch

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// maxHostLines bounds the hosts drawn one per line; the rest are counted.
const maxHostLines = 20

// LiveRolloutView redraws the rollout in place in a terminal: the header
// (state, batch k of n, elapsed), the hosts in flight with their step and
// how long they have been in it (the health gate with its countdown), and
// counts of the others.
type LiveRolloutView struct {
	// W is where the view is drawn.
	W io.Writer
	// Model is the rollout drawn, kept up to date by the caller.
	Model *RolloutModel
	// Width is the terminal's width; lines are cut to it so that the
	// redraw can count them.
	Width int
	// Now is the clock; nil: time.Now.
	Now func() time.Time

	frame frame
	notes []string
}

// Event redraws after an event.
func (v *LiveRolloutView) Event(*flotillav1.RolloutEvent) { v.draw(v.now()) }

// Tick redraws the clocks.
func (v *LiveRolloutView) Tick(now time.Time) { v.draw(now) }

// Note shows a line above the view (a re-attach) until the next one.
func (v *LiveRolloutView) Note(line string) {
	v.notes = append(v.notes[:0], line)
	v.draw(v.now())
}

// Close leaves the last drawing on screen.
func (v *LiveRolloutView) Close() {}

func (v *LiveRolloutView) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *LiveRolloutView) draw(now time.Time) {
	v.frame.draw(v.W, v.Width, append(RenderRollout(v.Model, now), v.notes...))
}

// frame redraws a block of lines in place: the cursor goes back up over
// the lines drawn last time, which are cleared, and the new ones are
// written, each cut to the terminal's width so that none wraps and the
// count stays right.
type frame struct{ drawn int }

func (f *frame) draw(w io.Writer, width int, lines []string) {
	var b strings.Builder
	if f.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", f.drawn) // back to the first line drawn
	}
	b.WriteString("\r\x1b[J") // clear from there down
	for _, l := range lines {
		b.WriteString(cut(l, width))
		b.WriteString("\n")
	}
	f.drawn = len(lines)
	_, _ = io.WriteString(w, b.String())
}

// cut shortens s to width runes (no limit when width <= 0).
func cut(s string, width int) string {
	if width <= 0 {
		return s
	}
	r := []rune(s)
	if len(r) < width {
		return s
	}
	return string(r[:width-1]) + "…"
}

// RenderRollout is the live view's lines at now.
func RenderRollout(m *RolloutModel, now time.Time) []string {
	r := m.Rollout
	head := fmt.Sprintf("rollout %s  %s → %s  %s", r.GetId(), r.GetService(), r.GetImage(), StateName(m.State))
	if n := m.BatchCount(); n > 0 {
		head += fmt.Sprintf("  batch %d of %d", m.Batch+1, n)
	}
	if !r.GetCreatedAt().AsTime().IsZero() {
		head += "  " + since(r.GetCreatedAt().AsTime(), now)
	}
	lines := []string{head}
	if m.Message != "" {
		lines = append(lines, "  "+m.Message)
	}
	return append(lines, hostLines(m, now)...)
}

// hostLines draws the hosts in flight (or failed) one per line, then the
// counts of hosts by step.
func hostLines(m *RolloutModel, now time.Time) []string {
	hosts := make([]*HostView, 0, len(m.Hosts))
	for _, h := range m.Hosts {
		hosts = append(hosts, h)
	}
	sort.Slice(hosts, func(i, j int) bool {
		if hosts[i].Batch != hosts[j].Batch {
			return hosts[i].Batch < hosts[j].Batch
		}
		return hosts[i].AgentID < hosts[j].AgentID
	})
	var lines []string
	counts := map[string]int{}
	for _, h := range hosts {
		if !shownAlone(h) || len(lines) >= maxHostLines {
			counts[StepName(h.Step)]++
			continue
		}
		lines = append(lines, hostLine(m, h, now))
	}
	if len(counts) > 0 {
		names := make([]string, 0, len(counts))
		for n := range counts {
			names = append(names, n)
		}
		sort.Strings(names)
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s %d", strings.ToLower(n), counts[n])
		}
		lines = append(lines, "  hosts: "+strings.Join(parts, ", "))
	}
	return lines
}

// shownAlone reports whether a host gets a line of its own: in flight, or
// stopped in a failure.
func shownAlone(h *HostView) bool {
	switch h.Step {
	case flotillav1.HostStep_HOST_STEP_PENDING, flotillav1.HostStep_HOST_STEP_DONE,
		flotillav1.HostStep_HOST_STEP_SKIPPED, flotillav1.HostStep_HOST_STEP_ROLLED_BACK:
		return false
	}
	return true
}

func hostLine(m *RolloutModel, h *HostView, now time.Time) string {
	step := StepName(h.Step)
	if h.RollingBack {
		step += " (rollback)"
	}
	line := fmt.Sprintf("  batch %-3d %-24s %-24s %6s", h.Batch+1, h.AgentID, step, since(h.Since, now))
	if h.Step == flotillav1.HostStep_HOST_STEP_HEALTH_CHECK {
		line += "  " + gateCountdown(m.Rollout.GetStrategy(), h.Since, now)
	} else if h.Message != "" {
		line += "  " + h.Message
	}
	return line
}

// gateCountdown says how long the health gate still has.
func gateCountdown(s *flotillav1.RolloutStrategy, start, now time.Time) string {
	deadline := s.GetHealthyDeadline().AsDuration()
	if deadline <= 0 || start.IsZero() {
		return "health gate"
	}
	left := start.Add(deadline).Sub(now).Round(time.Second)
	if left < 0 {
		left = 0
	}
	return fmt.Sprintf("health gate: needs %s healthy, deadline in %s", s.GetMinHealthyTime().AsDuration(), left)
}

// since is the time from t to now, rounded to the second.
func since(t, now time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return ""
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String()
}
