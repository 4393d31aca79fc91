package rollout

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
)

// Blue-green and surge rollouts start each host's new container beside the
// live one, on the load balancer's other port (see docs/deploy.md):
//
//	STARTING_CANDIDATE  the agent starts "<container>.flotilla-next" on the
//	                    other port and gates it on its own health there
//	READY               (blue-green) healthy; waits for every host
//	SWITCHING           the load balancers move the host's server to the new
//	                    port (blue-green: every host at once, one change per
//	                    load balancer), then the new container takes the
//	                    service's container name (PROMOTE; surge: REPLACE,
//	                    which also removes the old one)
//	DONE
//
// A blue-green rollout then keeps the previous containers for
// keep_previous (SWITCHED) and removes them (RETIRE) before it succeeds. A
// blue-green rollout that stops switches back: every load balancer at once
// (one change each), then each host's previous container takes its name
// back (REVERT, which also removes a candidate that never took traffic).
//
// What the steps need is stored under the rollout's fence: the hosts' steps
// and servers, the commands (whose IDs are derived from the rollout, so a
// control plane that takes the rollout over finds them), and the end of the
// batch, from which keep_until follows.

// Step names of blue-green and surge commands in command IDs.
const (
	stepCandidate = "candidate"
	stepSwitch    = "switch" // blue-green: "<rollout>.<lb>.switch[.rb]"
	stepSwap      = "swap"   // surge: "<rollout>.<agent>.swap.<lb>[.rb]"
	stepUnswap    = "unswap" // surge: a failed swap undone
	stepPromote   = "promote"
	stepRevert    = "revert"
	stepRetire    = "retire"
)

// lbSettle is how long a container that lost its traffic keeps running
// after the load balancers' change succeeded, before it is stopped:
// "nginx -s reload" returns once nginx's master has the signal, and its old
// workers go on proxying the requests in flight (and those already on
// their connections) to the old servers for a moment. Stopping the last
// servers of the old configuration at once makes those requests fail (502).
const lbSettle = 2 * time.Second

// DefaultKeepPrevious is how long a blue-green rollout keeps the previous
// containers after the switch when keep_previous is unset.
const DefaultKeepPrevious = 15 * time.Minute

func (r *runner) blueGreen() bool { return r.strategy.GetBlueGreen() != nil }

// sideBySide reports whether new containers start beside the live ones.
func (r *runner) sideBySide() bool { return r.blueGreen() || r.strategy.GetSurge() }

// keepPrevious is the strategy's keep_previous.
func keepPrevious(s *flotillav1.RolloutStrategy) time.Duration {
	return s.GetBlueGreen().GetKeepPrevious().AsDuration()
}

// keepUntil is when a blue-green rollout's previous containers go: the end
// of its batch (the switch and the promotions) plus keep_previous; zero
// before.
func keepUntil(s *flotillav1.RolloutStrategy, batches int, rec storeRolloutView) time.Time {
	if s.GetBlueGreen() == nil || rec.currentBatch < batches || rec.batchFinishedAt.IsZero() {
		return time.Time{}
	}
	return rec.batchFinishedAt.Add(keepPrevious(s))
}

// storeRolloutView is the part of a stored rollout keepUntil reads.
type storeRolloutView struct {
	currentBatch    int
	batchFinishedAt time.Time
}

func (r *runner) keepUntil() time.Time {
	return keepUntil(r.strategy, len(r.batches), storeRolloutView{r.rec.CurrentBatch, r.rec.BatchFinishedAt})
}

// otherServer is the server of the container beside the one at server: the
// same address with the load balancer's other port.
func otherServer(lb *flotillav1.LoadBalancer, server string) string {
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return server
	}
	other := lb.GetAlternatePort()
	if port == strconv.Itoa(int(other)) {
		other = lb.GetServerPort()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(other)))
}

// serverPort is the port of a host:port server.
func serverPort(server string) int32 {
	_, port, err := net.SplitHostPort(server)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(port)
	return int32(p)
}

// enterCandidate starts a host's new container beside its live one.
func (r *runner) enterCandidate(c *change, h *host) {
	image := r.restartImage(h)
	if image == "" {
		r.fail(c, h, "its previous image is unknown (neither the candidate's result nor the agent's reports named it): put it back by hand")
		return
	}
	r.issueStep(c, h, stepCandidate, r.candidateSpec)
	r.setStep(c, h, flotillav1.HostStep_HOST_STEP_STARTING_CANDIDATE, fmt.Sprintf("starting %s with %s beside the live container, on %s",
		r.svc.GetContainer(), image, otherServer(r.svc.GetLoadBalancer(), h.Server)))
}

func (r *runner) candidateSpec(h *host) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_StartCandidate{StartCandidate: &flotillav1.StartCandidateCommand{
		Container: r.svc.GetContainer(), Image: r.restartImage(h), Port: serverPort(h.Server),
		CandidatePort:  serverPort(otherServer(r.svc.GetLoadBalancer(), h.Server)),
		MinHealthyTime: r.strategy.GetMinHealthyTime(), HealthyDeadline: r.strategy.GetHealthyDeadline(),
	}}}
}

// advanceCandidate follows a host's candidate: healthy, it waits for the
// switch (blue-green) or takes the host's place at once (surge); failed,
// the agent removed it and the live container never stopped serving.
func (r *runner) advanceCandidate(ctx context.Context, c *change, h *host) error {
	hc, ok, err := r.stepCommand(ctx, c, h, stepCandidate, r.candidateSpec)
	if err != nil || !ok {
		return err
	}
	switch outcome(hc) {
	case outcomeSucceeded:
		h.replaced(candidateResult(hc).GetPreviousImage())
		next := otherServer(r.svc.GetLoadBalancer(), h.Server)
		if r.blueGreen() {
			r.setStep(c, h, flotillav1.HostStep_HOST_STEP_READY, fmt.Sprintf("healthy on %s; waiting for every host before the load balancers switch", next))
			return nil
		}
		r.enterSwap(c, h)
	case outcomeFailed:
		msg := "candidate: " + hc.Message
		if !strings.Contains(hc.Message, lostMessage) {
			msg += "; the live container kept serving"
		}
		r.fail(c, h, msg)
	default:
		if hc.ReleasedAt.IsZero() {
			c.release = append(c.release, hc.ID)
		}
		return r.checkLost(ctx, c, h, hc)
	}
	return nil
}

func candidateResult(hc store.HostCommand) *flotillav1.CandidateResult {
	return commandResult(hc).GetCandidate()
}

// switchWhenReady switches the load balancers of a blue-green rollout once
// no candidate is starting any more: every READY host at once, one command
// per load balancer. It reports whether the batch may be looked at for its
// end (no host waits for the switch).
func (r *runner) switchWhenReady(c *change, batch []*host, paused bool) bool {
	var ready []*host
	for _, h := range batch {
		switch flotillav1.HostStep(h.Step) {
		case flotillav1.HostStep_HOST_STEP_PENDING, flotillav1.HostStep_HOST_STEP_STARTING_CANDIDATE:
			return false
		case flotillav1.HostStep_HOST_STEP_READY:
			ready = append(ready, h)
		}
	}
	if len(ready) == 0 {
		return true
	}
	if paused || r.rec.Stop != "" {
		return false
	}
	for _, h := range ready {
		r.setStep(c, h, flotillav1.HostStep_HOST_STEP_SWITCHING, fmt.Sprintf("switching %d load balancers from %s to %s",
			len(r.lbs), h.Server, otherServer(r.svc.GetLoadBalancer(), h.Server)))
	}
	for _, lb := range r.lbs {
		r.newCommand(c, commandID(r.rec.ID, lb, stepSwitch, "", false), lb, r.switchSpec(false))
	}
	r.log.Info("switching the load balancers to the new containers")
	return false
}

// switchSpec is a blue-green switch (or, rolling back, switch back) of
// every host concerned, as one swap_servers per load balancer. Switching
// back lists every changed host: a swap the load balancer never made is
// done already for the agent.
func (r *runner) switchSpec(rollback bool) *flotillav1.CommandSpec {
	lb := r.svc.GetLoadBalancer()
	cmd := &flotillav1.SwapServersCommand{Upstream: lb.GetUpstream()}
	for _, h := range r.hosts {
		switch {
		case rollback && h.Changed:
			cmd.Swaps = append(cmd.Swaps, &flotillav1.ServerSwap{From: otherServer(lb, h.Server), To: h.Server})
		case !rollback && !h.RollingBack && flotillav1.HostStep(h.Step) == flotillav1.HostStep_HOST_STEP_SWITCHING:
			cmd.Swaps = append(cmd.Swaps, &flotillav1.ServerSwap{From: h.Server, To: otherServer(lb, h.Server)})
		}
	}
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_SwapServers{SwapServers: cmd}}
}

// swapSpec is a surge host's own swap (undo: back).
func (r *runner) swapSpec(h *host, undo bool) *flotillav1.CommandSpec {
	lb := r.svc.GetLoadBalancer()
	from, to := h.Server, otherServer(lb, h.Server)
	if undo {
		from, to = to, from
	}
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_SwapServers{SwapServers: &flotillav1.SwapServersCommand{
		Upstream: lb.GetUpstream(), Swaps: []*flotillav1.ServerSwap{{From: from, To: to}}}}}
}

// enterSwap moves a surge host's server to its candidate on every load
// balancer.
func (r *runner) enterSwap(c *change, h *host) {
	for _, lb := range r.lbs {
		r.newCommand(c, commandID(r.rec.ID, h.AgentID, stepSwap, lb, h.RollingBack), lb, r.swapSpec(h, false))
	}
	r.setStep(c, h, flotillav1.HostStep_HOST_STEP_SWITCHING, fmt.Sprintf("healthy; moving %s to %s on %d load balancers",
		h.Server, otherServer(r.svc.GetLoadBalancer(), h.Server), len(r.lbs)))
}

// lbCommands looks at the load-balancer commands of a host's switch: the
// rollout's switch (blue-green) or the host's swaps (surge). A missing one
// is made again from the stored state.
func (r *runner) lbCommands(ctx context.Context, c *change, h *host, step string) (done bool, failed string, at time.Time, err error) {
	done = true
	var fails []string
	for _, lb := range r.lbs {
		id, spec := commandID(r.rec.ID, h.AgentID, step, lb, h.RollingBack), r.swapSpec(h, step == stepUnswap)
		if r.blueGreen() {
			id, spec = commandID(r.rec.ID, lb, stepSwitch, "", h.RollingBack), r.switchSpec(h.RollingBack)
		}
		hc, ok, err := r.command(ctx, id)
		if err != nil {
			return false, "", at, err
		}
		if !ok {
			r.newCommand(c, id, lb, spec)
			done = false
			continue
		}
		if hc.FinishedAt.After(at) {
			at = hc.FinishedAt
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
	return done, strings.Join(fails, "; "), at, nil
}

// containerAction is the blue_green command that ends a host's SWITCHING.
func (r *runner) containerAction(h *host) (string, flotillav1.BlueGreenAction) {
	switch {
	case h.RollingBack && r.blueGreen(), h.Failure != "":
		return stepRevert, flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_REVERT
	case r.blueGreen():
		return stepPromote, flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_PROMOTE
	default:
		return stepPromote, flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_REPLACE
	}
}

func (r *runner) blueGreenSpec(action flotillav1.BlueGreenAction) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_BlueGreen{BlueGreen: &flotillav1.BlueGreenCommand{
		Container: r.svc.GetContainer(), Action: action}}}
}

// advanceSwitching follows a host's SWITCHING: the load balancers first,
// then the container's name.
func (r *runner) advanceSwitching(ctx context.Context, c *change, h *host) error {
	step := stepSwap
	if h.Failure != "" {
		step = stepUnswap
	}
	done, failed, switchedAt, err := r.lbCommands(ctx, c, h, step)
	if err != nil || !done {
		return err
	}
	if failed != "" {
		return r.switchFailed(c, h, failed)
	}
	name, action := r.containerAction(h)
	id := commandID(r.rec.ID, h.AgentID, name, "", h.RollingBack)
	hc, ok, err := r.command(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		// PROMOTE stops nothing; the others stop the container that lost
		// its traffic, once nginx's old workers are done with it.
		if settled := switchedAt.Add(lbSettle); action != flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_PROMOTE && c.now.Before(settled) {
			c.wakeAt(settled)
			return nil
		}
		r.newCommand(c, id, h.AgentID, r.blueGreenSpec(action))
		return nil
	}
	switch outcome(hc) {
	case outcomeSucceeded:
		r.switched(c, h)
	case outcomeFailed:
		r.fail(c, h, fmt.Sprintf("%s of the containers failed: %s; the load balancers send the traffic to %s",
			strings.ToLower(strings.TrimPrefix(action.String(), "BLUE_GREEN_ACTION_")), hc.Message, r.liveServer(h)))
		if r.blueGreen() && !h.RollingBack {
			r.stop(c, "the promotion of host "+h.AgentID+"'s new container failed")
		}
	default:
		if hc.ReleasedAt.IsZero() {
			c.release = append(c.release, hc.ID)
		}
		return r.checkLost(ctx, c, h, hc)
	}
	return nil
}

// liveServer is where the load balancers send a SWITCHING host's traffic
// once its load-balancer commands succeeded.
func (r *runner) liveServer(h *host) string {
	if h.RollingBack && r.blueGreen() || h.Failure != "" {
		return h.Server
	}
	return otherServer(r.svc.GetLoadBalancer(), h.Server)
}

// switchFailed handles a failed load-balancer change of a host.
func (r *runner) switchFailed(c *change, h *host, failed string) error {
	switch {
	case h.RollingBack || h.Failure != "":
		msg := "switching back failed: " + failed + "; both containers left running: put the upstream back by hand"
		if h.Failure != "" {
			msg = h.Failure + "; " + msg
		}
		r.fail(c, h, msg)
	case r.blueGreen():
		r.fail(c, h, "the switch failed: "+failed)
		r.stop(c, "the switch of the load balancers failed: "+failed)
	default:
		// Surge: put the host's server back where it was on every load
		// balancer, then remove the candidate.
		h.Failure = "swap failed: " + failed
		for _, lb := range r.lbs {
			r.newCommand(c, commandID(r.rec.ID, h.AgentID, stepUnswap, lb, h.RollingBack), lb, r.swapSpec(h, true))
		}
		h.Message = h.Failure + "; moving it back and removing the candidate"
		c.touch(h)
	}
	return nil
}

// switched ends a host's SWITCHING in success.
func (r *runner) switched(c *change, h *host) {
	switch {
	case h.Failure != "":
		r.fail(c, h, h.Failure+"; back on its container, the candidate removed")
	case h.RollingBack && r.blueGreen():
		r.setStep(c, h, flotillav1.HostStep_HOST_STEP_ROLLED_BACK, fmt.Sprintf("back on %s at %s, its previous container (never re-created)",
			h.PreviousImage, h.Server))
	default:
		if !r.blueGreen() {
			// Surge: the host now serves on the other port.
			h.Server = otherServer(r.svc.GetLoadBalancer(), h.Server)
		}
		where := otherServer(r.svc.GetLoadBalancer(), h.Server)
		if !r.blueGreen() {
			where = h.Server
		}
		r.succeedSideBySide(c, h, where)
	}
}

func (r *runner) succeedSideBySide(c *change, h *host, where string) {
	if h.RollingBack {
		r.setStep(c, h, flotillav1.HostStep_HOST_STEP_ROLLED_BACK, fmt.Sprintf("back on %s, healthy, live on %s", r.restartImage(h), where))
		return
	}
	msg := fmt.Sprintf("runs %s, healthy, live on %s", r.rec.Image, where)
	if r.blueGreen() {
		msg += fmt.Sprintf("; its previous container keeps running for keep_previous (%s)", keepPrevious(r.strategy))
	}
	r.setStep(c, h, flotillav1.HostStep_HOST_STEP_DONE, msg)
}

// stop stops the rollout (see checkFailures) for a reason of its own. A
// blue-green rollout always switches back when it stops.
func (r *runner) stop(c *change, reason string) {
	if r.rec.Stop != "" {
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

// startSwitchBack begins a blue-green rollback: every load balancer is
// switched back at once, one command each, and every changed host waits in
// SWITCHING for it before its previous container takes its name back.
func (r *runner) startSwitchBack(c *change) {
	n := 0
	for _, h := range r.hosts {
		if h.Changed && !h.RollingBack {
			h.RollingBack, h.Failure = true, ""
			r.setStep(c, h, flotillav1.HostStep_HOST_STEP_SWITCHING, fmt.Sprintf("switching %d load balancers back to %s", len(r.lbs), h.Server))
			n++
		}
	}
	if n == 0 {
		return
	}
	for _, lb := range r.lbs {
		r.newCommand(c, commandID(r.rec.ID, lb, stepSwitch, "", true), lb, r.switchSpec(true))
	}
	r.log.Info("switching the load balancers back to the previous containers", zap.Int("hosts", n))
}

// keepWindow holds a switched blue-green rollout until keep_until, then
// removes the previous containers; it reports whether the rollout may
// succeed. A removal that fails is noted on its host and does not fail the
// rollout: the new containers serve.
func (r *runner) keepWindow(ctx context.Context, c *change) (bool, error) {
	until := r.keepUntil()
	if settled := r.rec.BatchFinishedAt.Add(lbSettle); until.Before(settled) {
		until = settled // even keep_previous 0s lets nginx's old workers finish
	}
	if c.now.Before(until) {
		if flotillav1.RolloutState(r.rec.State) != flotillav1.RolloutState_ROLLOUT_STATE_SWITCHED {
			r.setState(c, flotillav1.RolloutState_ROLLOUT_STATE_SWITCHED, fmt.Sprintf(
				"every load balancer sends the traffic to %s; the previous containers keep running until %s: RollbackService switches back to them at once",
				r.rec.Image, until.UTC().Format(time.RFC3339)))
		}
		c.wakeAt(until)
		return false, nil
	}
	done := true
	for _, h := range r.hosts {
		if flotillav1.HostStep(h.Step) != flotillav1.HostStep_HOST_STEP_DONE || !h.Changed {
			continue
		}
		id := commandID(r.rec.ID, h.AgentID, stepRetire, "", false)
		hc, ok, err := r.command(ctx, id)
		if err != nil {
			return false, err
		}
		switch {
		case !ok:
			r.newCommand(c, id, h.AgentID, r.blueGreenSpec(flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_RETIRE))
			done = false
		case outcome(hc) == outcomeWaiting:
			done = false
			if hc.ReleasedAt.IsZero() {
				c.release = append(c.release, id)
			}
			if err := r.checkLost(ctx, c, h, hc); err != nil {
				return false, err
			}
		case outcome(hc) == outcomeFailed && !strings.Contains(h.Message, "previous container not removed"):
			h.Message += "; previous container not removed: " + hc.Message
			c.touch(h)
		}
	}
	return done, nil
}

// blueGreenDefaults fills a blue-green strategy's keep_previous.
func blueGreenDefaults(bg *flotillav1.BlueGreen) {
	if bg.KeepPrevious == nil {
		bg.KeepPrevious = durationpb.New(DefaultKeepPrevious)
	}
}
