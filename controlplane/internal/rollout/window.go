package rollout

import (
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/logging"
	"flotilla.dev/pkg/validate"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/schedule"
	"flotilla.dev/controlplane/internal/store"
)

// Deploy windows (issue 15): a service's allowed and denied windows, each
// a cron expression read in an IANA time zone (package schedule, the one
// the backup schedules use) that opens a window for a duration. A moment
// is open when no denied window holds it and an allowed window does (or
// the service has none).

// Window limits.
const (
	maxWindows        = 20
	maxWindowStart    = 256
	maxWindowZone     = 64
	minWindowDuration = time.Minute
	maxWindowDuration = 31 * 24 * time.Hour
	// maxWindowSteps bounds the walk over window edges looking for the
	// next opening or closing; schedule.Next already gives up after five
	// years.
	maxWindowSteps = 10000
)

// window is one parsed deploy window.
type window struct {
	sched *schedule.Schedule
	dur   time.Duration
	zone  string
}

// windows are a service's parsed deploy windows.
type windows struct {
	allowed, denied []window
}

// parseWindows reads a service's windows; errors name the field
// ("service.allowed_windows[2].time_zone") under prefix.
func parseWindows(prefix string, svc *flotillav1.Service) (windows, error) {
	var w windows
	var err error
	if w.allowed, err = parseWindowList(prefix+".allowed_windows", svc.GetAllowedWindows()); err != nil {
		return windows{}, err
	}
	if w.denied, err = parseWindowList(prefix+".denied_windows", svc.GetDeniedWindows()); err != nil {
		return windows{}, err
	}
	return w, nil
}

func parseWindowList(field string, list []*flotillav1.DeployWindow) ([]window, error) {
	if len(list) > maxWindows {
		return nil, invalid(field, "%d windows, at most %d", len(list), maxWindows)
	}
	out := make([]window, 0, len(list))
	for i, dw := range list {
		f := fmt.Sprintf("%s[%d]", field, i)
		zone := dw.GetTimeZone()
		if len(zone) > maxWindowZone || validate.Text(zone, maxWindowZone) != nil {
			return nil, invalid(f+".time_zone", "%s is not an IANA time zone name (e.g. Europe/Paris)", validate.Quote(zone))
		}
		if _, err := schedule.LoadZone(zone); err != nil {
			return nil, invalid(f+".time_zone", "%s is not an IANA time zone name known to this control plane (e.g. Europe/Paris)", validate.Quote(zone))
		}
		start := dw.GetStart()
		switch {
		case start == "":
			return nil, invalid(f+".start", "required: a cron expression (minute hour day-of-month month day-of-week), e.g. \"0 8 * * 5\"")
		case len(start) > maxWindowStart:
			return nil, invalid(f+".start", "longer than %d bytes", maxWindowStart)
		case validate.Text(start, maxWindowStart) != nil:
			return nil, invalid(f+".start", "%s has control characters", validate.Quote(start))
		}
		sched, err := schedule.Parse(start, zone)
		if err != nil {
			return nil, invalid(f+".start", "%s: %v", validate.Quote(start), err)
		}
		if dw.GetDuration() == nil {
			return nil, invalid(f+".duration", "required: how long the window stays open, %s-%s", minWindowDuration, maxWindowDuration)
		}
		d, err := validate.Duration(dw.GetDuration())
		if err != nil {
			return nil, invalid(f+".duration", "%v", err)
		}
		if d < minWindowDuration || d > maxWindowDuration {
			return nil, invalid(f+".duration", "must be %s-%s, got %s", minWindowDuration, maxWindowDuration, d)
		}
		if zone == "" {
			zone = "UTC"
		}
		out = append(out, window{sched: sched, dur: d, zone: zone})
	}
	return out, nil
}

// empty reports whether the service has no window: rollouts run at any time.
func (w windows) empty() bool { return len(w.allowed) == 0 && len(w.denied) == 0 }

// holding returns the start of a window of w that holds t ([start,
// start+duration)), or false.
func (w window) holding(t time.Time) (time.Time, bool) {
	// A start that a daylight-saving gap moved later (02:30 to 03:30)
	// reads as an earlier wall time than the instant it became: look from
	// an hour (the longest gap) before the earliest start that can hold t.
	for s := w.sched.Next(t.Add(-w.dur - time.Hour)); !s.IsZero() && !s.After(t); s = w.sched.Next(s) {
		if s.Add(w.dur).After(t) {
			return s, true
		}
	}
	return time.Time{}, false
}

func (w window) String() string {
	return fmt.Sprintf("%q (%s, %s)", w.sched.String(), w.dur, w.zone)
}

// at formats t on the window's zone's clock, RFC 3339 with its offset.
func (w window) at(t time.Time) string {
	return t.In(w.sched.Location()).Format(time.RFC3339)
}

// open reports whether a rollout may run at t, with the window that
// decides (nil: no window does) and whether it is a denied one.
func (w windows) open(t time.Time) (bool, *window, bool) {
	for i := range w.denied {
		if _, ok := w.denied[i].holding(t); ok {
			return false, &w.denied[i], true
		}
	}
	if len(w.allowed) == 0 {
		return true, nil, false
	}
	for i := range w.allowed {
		if _, ok := w.allowed[i].holding(t); ok {
			return true, &w.allowed[i], false
		}
	}
	return false, nil, false
}

// nextOpen returns the first instant after t when the windows are open, and
// the window that opens them (for its zone); zero when none is found.
// Openings happen only at an allowed window's start or a denied window's
// end.
func (w windows) nextOpen(t time.Time) (time.Time, *window) {
	return w.nextEdge(t, w.allowed, w.denied, true)
}

// nextClose returns the first instant after t when the windows close (an
// allowed window's end or a denied window's start), and the window that
// closes them; zero when none is found (no window bounds them).
func (w windows) nextClose(t time.Time) (time.Time, *window) {
	return w.nextEdge(t, w.denied, w.allowed, false)
}

// nextEdge walks, in order, the instants after t when one of starts begins
// or one of ends ends, and returns the first at which the windows' openness
// is open, with the window that decides (for an opening, the allowed window
// holding it when there is one); zero when none comes within
// maxWindowSteps edges.
func (w windows) nextEdge(t time.Time, starts, ends []window, open bool) (time.Time, *window) {
	cur := t
	for range maxWindowSteps {
		var best time.Time
		var by *window
		consider := func(c time.Time, win *window) {
			if !c.IsZero() && (best.IsZero() || c.Before(best)) {
				best, by = c, win
			}
		}
		for i := range starts {
			consider(starts[i].sched.Next(cur), &starts[i])
		}
		for i := range ends {
			e := &ends[i]
			if s := e.sched.Next(cur.Add(-e.dur)); !s.IsZero() {
				consider(s.Add(e.dur), e)
			}
		}
		if best.IsZero() {
			return time.Time{}, nil
		}
		if ok, win, _ := w.open(best); ok == open {
			if open && win != nil {
				by = win
			}
			return best, by
		}
		cur = best
	}
	return time.Time{}, nil
}

// status is where t stands against the windows; nil when there are none.
func (w windows) status(t time.Time) *flotillav1.WindowStatus {
	if w.empty() {
		return nil
	}
	ok, win, denied := w.open(t)
	st := &flotillav1.WindowStatus{Open: ok}
	var parts []string
	switch {
	case ok && win != nil:
		start, _ := win.holding(t)
		parts = append(parts, fmt.Sprintf("inside allowed window %s since %s", win, win.at(start)))
	case ok:
		parts = append(parts, "outside every denied window (no allowed window: any other time is allowed)")
	case denied:
		start, _ := win.holding(t)
		parts = append(parts, fmt.Sprintf("inside denied window %s until %s", win, win.at(start.Add(win.dur))))
	default:
		parts = append(parts, "outside every allowed window")
	}
	if ok {
		if at, by := w.nextClose(t); !at.IsZero() {
			st.ClosesAt = ts(at)
			parts = append(parts, "the windows close at "+by.at(at))
		} else {
			parts = append(parts, "no window closes them")
		}
	} else {
		if at, by := w.nextOpen(t); !at.IsZero() {
			st.OpensAt = ts(at)
			parts = append(parts, "the next window opens at "+by.at(at))
		} else {
			parts = append(parts, "no window opens within five years")
		}
	}
	st.Message = strings.Join(parts, "; ")
	return st
}

// windowClosed pauses the rollout before batch i when the service's
// windows are closed, and reports whether it did. The pause is stored
// with the next window's start, when the rollout resumes by itself.
func (r *runner) windowClosed(c *change, i int) bool {
	if r.ignoreWindows || r.windows.empty() {
		return false
	}
	if ok, _, _ := r.windows.open(c.now); ok {
		return false
	}
	st := r.windows.status(c.now)
	msg := fmt.Sprintf("paused by the service's deploy windows before batch %d of %d: %s", i+1, len(r.batches), st.GetMessage())
	r.rec.ResumeAt = time.Time{}
	if st.GetOpensAt() != nil {
		r.rec.ResumeAt = st.GetOpensAt().AsTime()
		msg += "; the rollout resumes by itself then (AbortRollout stops it)"
		c.wakeAt(r.rec.ResumeAt)
	} else {
		msg += ": it stays paused until AbortRollout"
	}
	r.setState(c, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED, msg)
	r.e.cfg.Metrics.window("paused")
	return true
}

// windowReopened looks at a rollout paused by a deploy window (ResumeAt
// set) and reports whether it runs again: once ResumeAt passed and the
// windows are open, it resumes; if they are still closed (a denied window
// began meanwhile), the pause moves to the next opening.
func (r *runner) windowReopened(c *change) bool {
	if flotillav1.RolloutState(r.rec.State) != flotillav1.RolloutState_ROLLOUT_STATE_PAUSED {
		r.rec.ResumeAt, c.rollout = time.Time{}, true
		return true
	}
	if c.now.Before(r.rec.ResumeAt) {
		c.wakeAt(r.rec.ResumeAt)
		return false
	}
	st := r.windows.status(c.now)
	if st == nil || st.GetOpen() {
		why := "no deploy window any more"
		if st != nil {
			why = "deploy window open: " + st.GetMessage()
		}
		r.setState(c, r.resumeState(), why+"; resuming by itself")
		r.e.cfg.Metrics.window("resumed")
		return true
	}
	msg := "still outside the service's deploy windows: " + st.GetMessage()
	r.rec.ResumeAt = time.Time{}
	if st.GetOpensAt() != nil {
		r.rec.ResumeAt = st.GetOpensAt().AsTime()
		msg += "; the rollout resumes by itself then"
		c.wakeAt(r.rec.ResumeAt)
	}
	r.setState(c, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED, msg)
	return false
}

// resumeState is the state a paused rollout goes back to: preparing
// before the pre-pull ended, baking once the bake began, else running.
func (r *runner) resumeState() flotillav1.RolloutState {
	switch {
	case !r.rec.Prepared:
		return flotillav1.RolloutState_ROLLOUT_STATE_PREPARING
	case !r.rec.BakeUntil.IsZero():
		return flotillav1.RolloutState_ROLLOUT_STATE_BAKING
	}
	return flotillav1.RolloutState_ROLLOUT_STATE_RUNNING
}

// ignoresWindows reports whether a rollout runs regardless of deploy
// windows: a rollback or an automatic restart of a remediation policy
// (incident answers, never blocked by a window), or an override.
func ignoresWindows(def *flotillav1.Rollout) bool {
	return def.GetRollbackOf() != "" || def.GetRemediation() != nil || def.GetOverrideWindow()
}

// windowStatus is the status of a stored active rollout's windows now;
// nil when it ignores them or its service has none.
func (e *Engine) windowStatus(rec store.Rollout, def *flotillav1.Rollout) *flotillav1.WindowStatus {
	if Terminal(flotillav1.RolloutState(rec.State)) || def.GetRollbackOf() != "" || def.GetRemediation() != nil {
		return nil
	}
	svc := &flotillav1.Service{}
	if err := proto.Unmarshal(rec.ServiceSpec, svc); err != nil {
		return nil
	}
	w, err := parseWindows("service", svc)
	if err != nil {
		return nil
	}
	return w.status(e.cfg.Now())
}

// checkWindow decides a start against the service's windows: a rollback
// ignores them; otherwise the answer carries their status, and a start
// (not a dry run) outside them is refused unless it overrides them.
func (e *Engine) checkWindow(p startParams, svc *flotillav1.Service, now time.Time) (*flotillav1.WindowStatus, error) {
	if p.rollbackOf != "" || p.remediation != nil {
		return nil, nil
	}
	w, err := parseWindows("service", svc)
	if err != nil {
		return nil, fault.Preconditionf("the service's deploy windows do not parse (%v): PutService them again", err)
	}
	st := w.status(now)
	if st == nil || st.GetOpen() || p.dryRun {
		return st, nil
	}
	if p.overrideWindow {
		e.cfg.Metrics.window("overridden")
		e.log.Warn("deploy window overridden", logging.Service(p.service), zap.String("image", p.image),
			logging.Principal(p.createdBy), zap.String("reason", p.reason), zap.String("window", st.GetMessage()))
		return st, nil
	}
	e.cfg.Metrics.window("refused")
	msg := fmt.Sprintf("service %s is outside its deploy windows: %s", p.service, st.GetMessage())
	if st.GetOpensAt() != nil {
		msg += "; start it then, or set override_window with a reason"
	} else {
		msg += "; change the service's windows, or set override_window with a reason"
	}
	return nil, fault.Preconditionf("%s", msg)
}
