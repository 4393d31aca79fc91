package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// stepForward moves a rollout that is preparing, running or paused:
// hosts in progress first, then the pre-pull, the failure limit, and the
// batches.
func (r *runner) stepForward(ctx context.Context, c *change) error {
	if err := r.advanceBatch(ctx, c); err != nil {
		return err
	}
	r.checkFailures(c) // pre-pull failures stop new pulls too
	if !r.rec.Prepared {
		prepared, err := r.prepare(ctx, c)
		if err != nil || !prepared {
			return err
		}
	}
	r.checkFailures(c)
	if r.rec.Stop != "" {
		if r.inProgress() == 0 {
			r.finishStopped(c)
		}
		return nil
	}
	if !r.rec.ResumeAt.IsZero() && !r.windowReopened(c) {
		return nil
	}
	// A paused rollout starts no host and no batch, but still records the
	// end of the batch in progress (and of the rollout, if it was the last).
	paused := flotillav1.RolloutState(r.rec.State) == flotillav1.RolloutState_ROLLOUT_STATE_PAUSED
	for r.rec.CurrentBatch < len(r.batches) {
		i := r.rec.CurrentBatch
		batch := r.batches[i]
		if r.rec.BatchStartedAt.IsZero() && (paused || !r.startBatch(c, i)) {
			return nil
		}
		limit := r.maxUnavailable(len(batch))
		running := 0
		for _, h := range batch {
			if activeStep(flotillav1.HostStep(h.Step)) {
				running++
			}
		}
		for _, h := range batch {
			if paused || running >= limit {
				break
			}
			if flotillav1.HostStep(h.Step) == flotillav1.HostStep_HOST_STEP_PENDING {
				r.startHost(c, h)
				running++
			}
		}
		if r.blueGreen() && !r.switchWhenReady(c, batch, paused) {
			return nil
		}
		if !r.batchDone(batch, false) {
			if !r.blueGreen() && r.inGate(batch) {
				// Measured during the hosts' health gate too (a blue-green
				// candidate takes no traffic there); a failure stops the
				// rollout as it would after the gate.
				r.analysisGate(ctx, c, i, paused, true)
			}
			return nil
		}
		// A blue-green rollout's analysis is its bake (its new containers
		// take traffic once every host switched).
		if !r.blueGreen() && r.anyDone(batch) && !r.analysisGate(ctx, c, i, paused, false) {
			return nil
		}
		r.batchFinished(c, i, r.batchSummary(batch))
		r.rec.CurrentBatch++
		r.checkFailures(c)
		if r.rec.Stop != "" {
			// The next step skips the remaining hosts (and rolls back).
			return nil
		}
	}
	return r.finishForward(ctx, c, paused)
}

// finishForward ends a rollout whose every batch is done: after its bake,
// and for a blue-green one its keep window, it succeeds.
func (r *runner) finishForward(ctx context.Context, c *change, paused bool) error {
	if !r.bake(ctx, c, paused) {
		return nil
	}
	if r.blueGreen() && r.anyDone(r.hosts) {
		if ok, err := r.keepWindow(ctx, c); err != nil || !ok {
			return err
		}
	}
	r.succeed(c)
	return nil
}

// startBatch starts batch i once the pause between batches is over and
// the service's deploy windows are open, and reports whether it did.
func (r *runner) startBatch(c *change, i int) bool {
	if pause := r.strategy.GetPauseBetweenBatches().AsDuration(); i > 0 && pause > 0 {
		if until := r.rec.BatchFinishedAt.Add(pause); c.now.Before(until) {
			c.wakeAt(until)
			return false
		}
	}
	if r.windowClosed(c, i) {
		return false
	}
	msg := fmt.Sprintf("batch %d of %d: %d hosts", i+1, len(r.batches), len(r.batches[i]))
	if r.def.GetBatches()[i].GetCanary() {
		msg += " (canary)"
	}
	r.batchStarted(c, i, msg)
	return true
}

// inGate reports whether a host of the batch runs the new image (in its
// health gate or past it) while the rollout is not stopping: the batch's
// analysis has begun.
func (r *runner) inGate(batch []*host) bool {
	if r.rec.Stop != "" {
		return false
	}
	for _, h := range batch {
		if runsNewImage(flotillav1.HostStep(h.Step)) {
			return true
		}
	}
	return false
}

// runsNewImage reports whether a host at step runs the rollout's image:
// in its health gate, being undrained, or done.
func runsNewImage(s flotillav1.HostStep) bool {
	switch s {
	case flotillav1.HostStep_HOST_STEP_HEALTH_CHECK, flotillav1.HostStep_HOST_STEP_UNDRAINING, flotillav1.HostStep_HOST_STEP_DONE:
		return true
	}
	return false
}

// anyDone reports whether a host of the batch runs the new image (DONE):
// a batch with none has nothing to analyse.
func (r *runner) anyDone(batch []*host) bool {
	for _, h := range batch {
		if flotillav1.HostStep(h.Step) == flotillav1.HostStep_HOST_STEP_DONE {
			return true
		}
	}
	return false
}

// maxUnavailable is how many hosts of a batch of n may be in progress.
func (r *runner) maxUnavailable(n int) int {
	if m := int(r.strategy.GetMaxUnavailable()); m > 0 && m < n {
		return m
	}
	return n
}

// advanceBatch moves the hosts in progress, which are always in the
// current batch.
func (r *runner) advanceBatch(ctx context.Context, c *change) error {
	if r.rec.CurrentBatch < 0 || r.rec.CurrentBatch >= len(r.batches) {
		return nil
	}
	for _, h := range r.batches[r.rec.CurrentBatch] {
		if activeStep(flotillav1.HostStep(h.Step)) {
			if err := r.advance(ctx, c, h); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *runner) inProgress() int {
	if r.rec.CurrentBatch < 0 || r.rec.CurrentBatch >= len(r.batches) {
		return 0
	}
	n := 0
	for _, h := range r.batches[r.rec.CurrentBatch] {
		if activeStep(flotillav1.HostStep(h.Step)) {
			n++
		}
	}
	return n
}

// batchDone reports whether every host of a batch is done with the pass
// (for a rollback pass: every changed host).
func (r *runner) batchDone(batch []*host, rollback bool) bool {
	for _, h := range batch {
		step := flotillav1.HostStep(h.Step)
		if rollback {
			if h.Changed && (!h.RollingBack || !terminalStep(step)) {
				return false
			}
		} else if !terminalStep(step) {
			return false
		}
	}
	return true
}

func (r *runner) batchSummary(batch []*host) string {
	counts := map[flotillav1.HostStep]int{}
	for _, h := range batch {
		counts[flotillav1.HostStep(h.Step)]++
	}
	var parts []string
	for _, s := range []flotillav1.HostStep{flotillav1.HostStep_HOST_STEP_DONE, flotillav1.HostStep_HOST_STEP_FAILED,
		flotillav1.HostStep_HOST_STEP_SKIPPED, flotillav1.HostStep_HOST_STEP_ROLLED_BACK, flotillav1.HostStep_HOST_STEP_ROLLBACK_FAILED} {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, stepName(s)))
		}
	}
	return strings.Join(parts, ", ")
}

// prepare pre-pulls the image on every planned host, at most
// PullConcurrency at a time (hosts waiting to come back online do not take
// a slot). It reports whether the pre-pull is over.
func (r *runner) prepare(ctx context.Context, c *change) (bool, error) {
	inflight := 0
	kept := r.pullTodo[:0]
	for i, h := range r.pullTodo {
		if h.pull == pullUnknown {
			_, ok, err := r.command(ctx, h.pullID)
			if err != nil {
				kept = append(kept, r.pullTodo[i:]...)
				r.pullTodo = kept
				return false, err
			}
			h.pull = pullNotCreated
			if ok {
				h.pull = pullCreated
			}
		}
		if flotillav1.HostStep(h.Step) != flotillav1.HostStep_HOST_STEP_PENDING {
			continue // failed (lost, offline) while waiting
		}
		switch h.pull {
		case pullNotCreated:
			if r.rec.Stop != "" || inflight >= r.e.cfg.PullConcurrency {
				kept = append(kept, h)
				continue
			}
			r.newCommand(c, h.pullID, h.AgentID, &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{
				Pull: &flotillav1.PullCommand{Image: r.rec.Image}}})
			h.pull = pullCreated
			if !h.WaitingOffline {
				inflight++
			}
			kept = append(kept, h)
		case pullCreated:
			done, err := r.checkPull(ctx, c, h)
			if err != nil {
				kept = append(kept, r.pullTodo[i:]...)
				r.pullTodo = kept
				return false, err
			}
			if done {
				h.pull = pullDone
				continue
			}
			if !h.WaitingOffline {
				inflight++
			}
			kept = append(kept, h)
		}
	}
	clear(r.pullTodo[len(kept):])
	r.pullTodo = kept
	if len(r.pullTodo) > 0 {
		if r.rec.Stop != "" && inflight == 0 {
			return false, r.stopDuringPrepare(ctx, c)
		}
		return false, nil
	}
	r.rec.Prepared = true
	c.rollout = true
	if flotillav1.RolloutState(r.rec.State) == flotillav1.RolloutState_ROLLOUT_STATE_PREPARING {
		r.setState(c, flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, fmt.Sprintf("image %s pulled; %d hosts in %d batches", r.rec.Image, r.pending(), len(r.batches)))
	}
	return true, nil
}

// stopDuringPrepare ends the pre-pull of a stopping rollout once no pull is
// in flight: pulls still waiting for an offline host are dropped, and the
// hosts never pulled are skipped by finishStopped.
func (r *runner) stopDuringPrepare(ctx context.Context, c *change) error {
	var waiting []string
	for _, h := range r.pullTodo {
		if h.pull == pullCreated {
			waiting = append(waiting, h.pullID)
		}
	}
	if len(waiting) > 0 {
		if err := r.e.cfg.Dispatcher.Finish(ctx, waiting, flotillav1.CommandState_COMMAND_STATE_SKIPPED, "not needed: the rollout stopped ("+r.rec.Stop+")"); err != nil {
			return err
		}
	}
	r.pullTodo = nil
	r.rec.Prepared = true
	c.rollout = true
	return nil
}

func (r *runner) pending() int {
	n := 0
	for _, h := range r.hosts {
		if flotillav1.HostStep(h.Step) == flotillav1.HostStep_HOST_STEP_PENDING {
			n++
		}
	}
	return n
}

// checkPull looks at a host's pre-pull and reports whether it is over
// (pulled, or the host failed).
func (r *runner) checkPull(ctx context.Context, c *change, h *host) (bool, error) {
	hc, ok, err := r.command(ctx, h.pullID)
	if err != nil {
		return false, err
	}
	if !ok {
		// Stored with the pull's transition, so this does not happen; make
		// it again rather than wait forever.
		h.pull = pullNotCreated
		return false, nil
	}
	switch outcome(hc) {
	case outcomeSucceeded:
		if h.WaitingOffline {
			h.WaitingOffline = false
			h.Message = "back online; image pulled"
			c.touch(h)
		}
		return true, nil
	case outcomeFailed:
		msg := "pre-pull of " + r.rec.Image + " failed: " + hc.Message
		if strings.Contains(hc.Message, offlineWaitMessage) || strings.Contains(hc.Message, "stopped answering") {
			msg = hc.Message
		}
		r.setStep(c, h, flotillav1.HostStep_HOST_STEP_FAILED, msg)
		return true, nil
	}
	if h.WaitingOffline {
		return false, r.checkOfflineWait(ctx, c, h, hc.ID)
	}
	if hc.ReleasedAt.IsZero() {
		c.release = append(c.release, hc.ID)
	}
	return false, r.checkLost(ctx, c, h, hc)
}

// checkFailures stops the rollout once max_failures hosts failed, or as
// soon as a canary host failed.
func (r *runner) checkFailures(c *change) {
	if r.rec.Stop != "" {
		return
	}
	reason := ""
	switch {
	case r.canaryFailed != "":
		reason = r.canaryFailed
	case r.failures >= r.maxFailures:
		reason = fmt.Sprintf("max_failures reached: %d of %d hosts failed (limit %d)", r.failures, len(r.hosts), r.maxFailures)
	default:
		return
	}
	r.rec.Stop, r.rec.StopState = reason, int32(flotillav1.RolloutState_ROLLOUT_STATE_FAILED)
	r.rec.StopRollback = r.strategy.GetAutoRollback() || r.blueGreen()
	msg := "stopping: " + reason + "; hosts in progress finish, no new host starts"
	if r.rec.StopRollback {
		msg += ", then the changed hosts are rolled back"
	}
	r.setState(c, flotillav1.RolloutState(r.rec.State), msg)
}

// finishStopped ends a stopped rollout once no host is in progress: the
// hosts never started are skipped, then the changed hosts are rolled back
// (when asked) or the rollout ends FAILED or ABORTED.
func (r *runner) finishStopped(c *change) {
	for _, h := range r.hosts {
		if flotillav1.HostStep(h.Step) == flotillav1.HostStep_HOST_STEP_PENDING {
			r.setStep(c, h, flotillav1.HostStep_HOST_STEP_SKIPPED, "not started: "+r.rec.Stop)
		}
	}
	if !r.rec.BatchStartedAt.IsZero() && r.rec.CurrentBatch < len(r.batches) {
		r.batchFinished(c, r.rec.CurrentBatch, "stopped: "+r.batchSummary(r.batches[r.rec.CurrentBatch]))
	}
	last, changed := -1, 0
	for _, h := range r.hosts {
		if h.Changed {
			changed++
			last = max(last, h.Batch)
		}
	}
	if r.rec.StopRollback && changed > 0 {
		trigger := "auto"
		if flotillav1.RolloutState(r.rec.StopState) == flotillav1.RolloutState_ROLLOUT_STATE_ABORTED {
			trigger = "abort"
		}
		r.e.cfg.Metrics.rollback(trigger)
		r.rec.CurrentBatch, r.rec.BatchStartedAt = last, time.Time{}
		r.setState(c, flotillav1.RolloutState_ROLLOUT_STATE_ROLLING_BACK,
			fmt.Sprintf("%s; rolling back %d changed hosts to their previous image", r.rec.Stop, changed))
		return
	}
	msg := r.rec.Stop
	if r.rec.StopRollback {
		msg += "; no host was changed, nothing to roll back"
	}
	r.setState(c, flotillav1.RolloutState(r.rec.StopState), msg)
}

// succeed ends a rollout whose every batch is done.
func (r *runner) succeed(c *change) {
	var failed []string
	for _, h := range r.hosts {
		if flotillav1.HostStep(h.Step) == flotillav1.HostStep_HOST_STEP_FAILED {
			failed = append(failed, h.AgentID)
		}
	}
	msg := fmt.Sprintf("every host runs %s", r.rec.Image)
	if r.blueGreen() {
		msg += "; the previous containers were removed after keep_previous"
	}
	if r.def.GetRemediation() != nil {
		msg = fmt.Sprintf("every host was restarted in place on %s and is healthy", r.rec.Image)
	}
	if len(failed) > 0 {
		msg = fmt.Sprintf("%d hosts run %s; %d failed within max_failures %d: %s", len(r.hosts)-len(failed), r.rec.Image,
			len(failed), r.maxFailures, strings.Join(failed, ", "))
	}
	r.setState(c, flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED, msg)
}

// stepRollback puts every changed host back on its previous image, batch
// by batch in reverse order, through the same steps as the rollout. There
// is no pause between batches: a rollback should be quick.
func (r *runner) stepRollback(ctx context.Context, c *change) error {
	if err := r.advanceBatch(ctx, c); err != nil {
		return err
	}
	for r.rec.CurrentBatch >= 0 && r.rec.CurrentBatch < len(r.batches) {
		i := r.rec.CurrentBatch
		batch := r.batches[i]
		changed := 0
		for _, h := range batch {
			if h.Changed {
				changed++
			}
		}
		if changed > 0 && r.blueGreen() {
			if r.rec.BatchStartedAt.IsZero() {
				r.batchStarted(c, i, fmt.Sprintf("switching back: %d hosts", changed))
				r.startSwitchBack(c)
			}
			if !r.batchDone(batch, true) {
				return nil
			}
			r.batchFinished(c, i, "switched back: "+r.batchSummary(batch))
		} else if changed > 0 {
			if r.rec.BatchStartedAt.IsZero() {
				r.batchStarted(c, i, fmt.Sprintf("rolling back batch %d: %d hosts", i+1, changed))
			}
			running := 0
			for _, h := range batch {
				if h.RollingBack && activeStep(flotillav1.HostStep(h.Step)) {
					running++
				}
			}
			limit := r.maxUnavailable(len(batch))
			for _, h := range batch {
				if running >= limit {
					break
				}
				if h.Changed && !h.RollingBack {
					r.startRollback(c, h)
					running++
				}
			}
			if !r.batchDone(batch, true) {
				return nil
			}
			r.batchFinished(c, i, "rolled back: "+r.batchSummary(batch))
		}
		r.rec.CurrentBatch--
		c.rollout = true
	}
	r.rec.CurrentBatch = 0
	var failed []string
	rolledBack := 0
	for _, h := range r.hosts {
		switch flotillav1.HostStep(h.Step) {
		case flotillav1.HostStep_HOST_STEP_ROLLBACK_FAILED:
			failed = append(failed, h.AgentID)
		case flotillav1.HostStep_HOST_STEP_ROLLED_BACK:
			rolledBack++
		}
	}
	if len(failed) > 0 {
		r.setState(c, flotillav1.RolloutState_ROLLOUT_STATE_ROLLBACK_FAILED, fmt.Sprintf("%s; the rollback failed on %d hosts (%s): they need an operator",
			r.rec.Stop, len(failed), strings.Join(failed, ", ")))
		return nil
	}
	r.setState(c, flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, fmt.Sprintf("%s; %d hosts rolled back to their previous image", r.rec.Stop, rolledBack))
	return nil
}
