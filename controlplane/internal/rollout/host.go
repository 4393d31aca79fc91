package rollout

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/store"
)

// Step names in command IDs.
const (
	stepPull    = "pull"
	stepDrain   = "drain"
	stepRestart = "restart"
	stepUndrain = "undrain"
)

// Phrases that the engine and the dispatcher put in messages, and that the
// engine recognises in a failed command's message.
const (
	offlineWaitMessage = "offline for longer than offline_wait"
	lostMessage        = "stopped answering"
	leftDrained        = "; left drained on the load balancer so that no traffic reaches a broken host (undrain it by hand once fixed)"
)

type cmdOutcome int

const (
	outcomeWaiting cmdOutcome = iota
	outcomeSucceeded
	outcomeFailed
)

func outcome(hc store.HostCommand) cmdOutcome {
	st := flotillav1.CommandState(hc.State)
	switch {
	case st == flotillav1.CommandState_COMMAND_STATE_SUCCEEDED:
		return outcomeSucceeded
	case command.Terminal(st):
		return outcomeFailed
	default:
		return outcomeWaiting
	}
}

func marshal(m proto.Message) ([]byte, error) { return proto.Marshal(m) }

// startHost starts a pending host on the rollout's image.
func (r *runner) startHost(c *change, h *host) {
	if r.sideBySide() {
		r.enterCandidate(c, h)
		return
	}
	if len(r.lbs) > 0 {
		r.enterDrain(c, h)
		return
	}
	r.enterRestart(c, h)
}

// startRollback starts putting a changed host back on its previous image.
func (r *runner) startRollback(c *change, h *host) {
	h.RollingBack, h.Failure = true, ""
	r.startHost(c, h)
}

func (r *runner) lbSpec(kind string, h *host) *flotillav1.CommandSpec {
	up := r.svc.GetLoadBalancer().GetUpstream()
	if kind == stepDrain {
		return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drain{Drain: &flotillav1.DrainCommand{Upstream: up, Server: h.Server}}}
	}
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Undrain{Undrain: &flotillav1.UndrainCommand{Upstream: up, Server: h.Server}}}
}

func (r *runner) enterDrain(c *change, h *host) {
	for _, lb := range r.lbs {
		r.newCommand(c, commandID(r.rec.ID, h.AgentID, stepDrain, lb, h.RollingBack), lb, r.lbSpec(stepDrain, h))
	}
	r.setStep(c, h, flotillav1.HostStep_HOST_STEP_DRAINING, fmt.Sprintf("draining %s from %d load balancers", h.Server, len(r.lbs)))
}

// restartImage is the image a host's restart puts on: the rollout's, or
// for a rollback the one the host ran before.
func (r *runner) restartImage(h *host) string {
	if !h.RollingBack {
		return r.rec.Image
	}
	if h.PreviousImage != "" {
		return h.PreviousImage
	}
	return h.ObservedImage
}

func (r *runner) restartSpec(h *host) *flotillav1.CommandSpec {
	image := r.restartImage(h)
	if r.def.GetRemediation() != nil {
		image = "" // an automatic restart keeps the container's image
	}
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{Restart: &flotillav1.RestartCommand{
		Container: r.svc.GetContainer(), Image: image}}}
}

func (r *runner) enterRestart(c *change, h *host) {
	image := r.restartImage(h)
	if image == "" {
		r.fail(c, h, "its previous image is unknown (neither the restart's result nor the agent's reports named it): put it back by hand")
		return
	}
	r.issueStep(c, h, stepRestart, r.restartSpec)
	msg := fmt.Sprintf("restarting %s with %s", r.svc.GetContainer(), image)
	if r.def.GetRemediation() != nil {
		msg = fmt.Sprintf("restarting %s in place for its memory (%s)", r.svc.GetContainer(), r.def.GetRemediation().GetReason())
	}
	r.setStep(c, h, flotillav1.HostStep_HOST_STEP_RESTARTING, msg)
}

// enterHealth starts a host's health gate; heartbeats count from after,
// when the control plane heard that the restart succeeded, and container
// is the new container's ID from its result ("" when unknown).
func (r *runner) enterHealth(c *change, h *host, after time.Time, container string) {
	h.gate = gate{after: after, container: container}
	r.setStep(c, h, flotillav1.HostStep_HOST_STEP_HEALTH_CHECK, fmt.Sprintf("waiting for %s of continuous health within %s",
		r.strategy.GetMinHealthyTime().AsDuration(), r.strategy.GetHealthyDeadline().AsDuration()))
}

func (r *runner) enterUndrain(c *change, h *host, msg string) {
	for _, lb := range r.lbs {
		r.newCommand(c, commandID(r.rec.ID, h.AgentID, stepUndrain, lb, h.RollingBack), lb, r.lbSpec(stepUndrain, h))
	}
	r.setStep(c, h, flotillav1.HostStep_HOST_STEP_UNDRAINING, msg)
}

// fail ends a host's pass in failure.
func (r *runner) fail(c *change, h *host, msg string) {
	h.Failure = ""
	step := flotillav1.HostStep_HOST_STEP_FAILED
	if h.RollingBack {
		step = flotillav1.HostStep_HOST_STEP_ROLLBACK_FAILED
	}
	r.setStep(c, h, step, msg)
}

// succeedHost ends a host's pass in success.
func (r *runner) succeedHost(c *change, h *host) {
	where := ""
	if len(r.lbs) > 0 {
		where = ", back in the load balancer"
	}
	if h.RollingBack {
		r.setStep(c, h, flotillav1.HostStep_HOST_STEP_ROLLED_BACK, fmt.Sprintf("back on %s, healthy%s", r.restartImage(h), where))
		return
	}
	r.setStep(c, h, flotillav1.HostStep_HOST_STEP_DONE, fmt.Sprintf("runs %s, healthy%s", r.rec.Image, where))
}

// advance moves a host in progress as far as its commands allow.
func (r *runner) advance(ctx context.Context, c *change, h *host) error {
	switch flotillav1.HostStep(h.Step) {
	case flotillav1.HostStep_HOST_STEP_DRAINING:
		done, failed, err := r.lbStep(ctx, c, h, stepDrain)
		if err != nil || !done {
			return err
		}
		switch {
		case failed != "" && h.RollingBack:
			// The host may be one that failed its health gate: leave it
			// as it is for an operator.
			r.fail(c, h, "drain failed: "+failed+"; left as it is")
		case failed != "":
			h.Failure = "drain failed: " + failed
			r.enterUndrain(c, h, h.Failure+"; putting the host back into the load balancer")
		default:
			r.enterRestart(c, h)
		}
		return nil
	case flotillav1.HostStep_HOST_STEP_RESTARTING:
		return r.advanceRestart(ctx, c, h)
	case flotillav1.HostStep_HOST_STEP_STARTING_CANDIDATE:
		return r.advanceCandidate(ctx, c, h)
	case flotillav1.HostStep_HOST_STEP_SWITCHING:
		return r.advanceSwitching(ctx, c, h)
	case flotillav1.HostStep_HOST_STEP_HEALTH_CHECK:
		r.checkHealth(c, h)
	case flotillav1.HostStep_HOST_STEP_UNDRAINING:
		done, failed, err := r.lbStep(ctx, c, h, stepUndrain)
		if err != nil || !done {
			return err
		}
		switch {
		case failed != "" && h.Failure != "":
			r.fail(c, h, h.Failure+"; undrain failed too: "+failed)
		case failed != "":
			r.fail(c, h, "undrain failed: "+failed+"; the host is healthy but out of the load balancer")
		case h.Failure != "":
			r.fail(c, h, h.Failure+"; back in the load balancer")
		default:
			r.succeedHost(c, h)
		}
	}
	return nil
}

// stepCommand returns the host's command for step (restart, candidate),
// issuing it from spec when it does not exist yet; ok is false until there
// is one to follow.
func (r *runner) stepCommand(ctx context.Context, c *change, h *host, step string, spec func(*host) *flotillav1.CommandSpec) (store.HostCommand, bool, error) {
	hc, ok, err := r.command(ctx, commandID(r.rec.ID, h.AgentID, step, "", h.RollingBack))
	if err != nil || ok {
		return hc, ok, err
	}
	r.issueStep(c, h, step, spec)
	return store.HostCommand{}, false, nil
}

// issueStep issues the host's command for step (restart, candidate) from
// spec, under the ID that the rollout, the host, the step and the pass
// (forward or rollback) give it.
func (r *runner) issueStep(c *change, h *host, step string, spec func(*host) *flotillav1.CommandSpec) {
	r.newCommand(c, commandID(r.rec.ID, h.AgentID, step, "", h.RollingBack), h.AgentID, spec(h))
}

// replaced records that the host's container now runs the rollout's image
// (a rollback's own step changes nothing to undo): previous is the image
// the agent reported replacing, or the one it was last seen running.
func (h *host) replaced(previous string) {
	if h.RollingBack {
		return
	}
	h.Changed = true
	h.PreviousImage = cmp.Or(previous, h.ObservedImage)
}

func (r *runner) advanceRestart(ctx context.Context, c *change, h *host) error {
	hc, ok, err := r.stepCommand(ctx, c, h, stepRestart, r.restartSpec)
	if err != nil || !ok {
		return err
	}
	switch outcome(hc) {
	case outcomeSucceeded:
		h.replaced(restartResult(hc).GetPreviousImage())
		r.enterHealth(c, h, hc.FinishedAt, restartResult(hc).GetContainerId())
	case outcomeFailed:
		switch {
		case strings.Contains(hc.Message, lostMessage):
			msg := "restart: " + hc.Message
			if len(r.lbs) > 0 {
				msg += "; left drained on the load balancer: the container's state is unknown"
			}
			r.fail(c, h, msg)
		case h.RollingBack:
			// The agent kept the container it had, the rollout's image,
			// which may be the reason for the rollback: no traffic.
			msg := "restart to the previous image failed: " + hc.Message
			if len(r.lbs) > 0 {
				msg += "; left drained on the load balancer"
			}
			r.fail(c, h, msg)
		case len(r.lbs) > 0:
			// The agent puts the previous container back when a restart
			// fails, so the host can take traffic again.
			h.Failure = "restart failed: " + hc.Message
			r.enterUndrain(c, h, h.Failure+"; putting the host (on its previous container) back into the load balancer")
		default:
			r.fail(c, h, "restart failed: "+hc.Message)
		}
	default:
		if hc.ReleasedAt.IsZero() {
			c.release = append(c.release, hc.ID)
		}
		return r.checkLost(ctx, c, h, hc)
	}
	return nil
}

// lbStep looks at a host's drain or undrain on every load balancer. done is
// true once they all ended; failed describes those that failed.
func (r *runner) lbStep(ctx context.Context, c *change, h *host, kind string) (done bool, failed string, err error) {
	done = true
	var fails []string
	for _, lb := range r.lbs {
		id := commandID(r.rec.ID, h.AgentID, kind, lb, h.RollingBack)
		hc, ok, err := r.command(ctx, id)
		if err != nil {
			return false, "", err
		}
		if !ok {
			r.newCommand(c, id, lb, r.lbSpec(kind, h))
			done = false
			continue
		}
		switch outcome(hc) {
		case outcomeFailed:
			fails = append(fails, lb+": "+hc.Message)
		case outcomeWaiting:
			done = false
			if hc.ReleasedAt.IsZero() {
				c.release = append(c.release, id)
			}
		}
	}
	return done, strings.Join(fails, "; "), nil
}

func restartResult(hc store.HostCommand) *flotillav1.RestartResult {
	return commandResult(hc).GetRestart()
}

// commandResult decodes a command's result; nil when it has none.
func commandResult(hc store.HostCommand) *flotillav1.CommandResult {
	res := &flotillav1.CommandResult{}
	if len(hc.Result) == 0 || proto.Unmarshal(hc.Result, res) != nil {
		return nil
	}
	return res
}

// checkLost fails a host's command that its agent never took because the
// agent is lost. The dispatcher fails commands the agent accepted; one it
// never acknowledged would otherwise wait for its deadline (minutes). A
// command sent to an agent that is lost at that moment (or before this
// process took the rollout) still gives it agent_lost_after to come back.
func (r *runner) checkLost(ctx context.Context, c *change, h *host, hc store.HostCommand) error {
	c.wakeAt(c.now.Add(r.e.cfg.TickInterval))
	if flotillav1.CommandState(hc.State) != flotillav1.CommandState_COMMAND_STATE_PENDING ||
		r.e.cfg.Registry.State(h.AgentID) != store.AgentLost {
		return nil
	}
	since := hc.ReleasedAt
	if r.startedAt.After(since) {
		since = r.startedAt
	}
	limit := r.silenceLimit(since)
	if wait := since.Add(limit); c.now.Before(wait) {
		c.wakeAt(wait)
		return nil
	}
	msg := fmt.Sprintf("the agent %s (no heartbeat for %s) before it took the command", lostMessage, limit)
	return r.e.cfg.Dispatcher.Finish(ctx, []string{hc.ID}, flotillav1.CommandState_COMMAND_STATE_FAILED, msg)
}

// checkOfflineWait follows a host that was offline at the start (WAIT):
// it proceeds once the host is back and fails after offline_wait.
func (r *runner) checkOfflineWait(ctx context.Context, c *change, h *host, pullID string) error {
	if r.e.cfg.Registry.State(h.AgentID) == store.AgentConnected {
		h.WaitingOffline = false
		h.Message = "back online; waiting for its batch"
		c.touch(h)
		return nil
	}
	wait := r.strategy.GetOfflineWait().AsDuration()
	deadline := r.rec.CreatedAt.Add(wait)
	if c.now.Before(deadline) {
		c.wakeAt(deadline)
		c.wakeAt(c.now.Add(r.e.cfg.TickInterval))
		return nil
	}
	msg := fmt.Sprintf("the host stayed %s (%s); it was left out", offlineWaitMessage, wait)
	return r.e.cfg.Dispatcher.Finish(ctx, []string{pullID}, flotillav1.CommandState_COMMAND_STATE_FAILED, msg)
}
