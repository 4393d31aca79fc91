package rollouttest

import (
	"fmt"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// Run is a rollout under way, with the load through Nginx, the sampler of
// the upstream file, the recorder of Docker's create events and the
// WatchRollout stream that follow it.
type Run struct {
	ID    string
	Began time.Time
	// Watch follows the rollout; a caller that kills the control plane
	// starts it again.
	Watch    *grpcurl.Stream
	load     *fixture.Load
	upstream *upstreamSampler
	creates  *CreateRecorder
	fleet    Fleet
}

// Start starts the load (workers clients), the recorders and the rollout
// (StartRollout with body), and follows it.
func Start(t testing.TB, f Fleet, body string, workers int) *Run {
	t.Helper()
	r := &Run{fleet: f, creates: RecordCreates(t, f), upstream: sampleUpstream(t, f.Nginx().UpstreamFile(Upstream)),
		load: fixture.StartLoad(t, f.Nginx().URL(Upstream), workers, Timeout), Began: time.Now()}
	var started grpcurl.RolloutResponse
	f.API().RPC(t, grpcurl.RolloutService+"StartRollout", body, &started)
	if started.Rollout.ID == "" || started.Rollout.State != "ROLLOUT_STATE_PREPARING" {
		t.Fatalf("StartRollout answered %s", grpcurl.Dump(started))
	}
	r.ID = started.Rollout.ID
	r.Watch = f.API().WatchRollout(t, r.ID, Timeout)
	return r
}

// Observe starts the load (workers clients) and the recorders without
// starting a rollout: the caller follows one that the control plane
// starts on its own (an automatic restart) with Follow.
func Observe(t testing.TB, f Fleet, workers int) *Run {
	t.Helper()
	return &Run{fleet: f, creates: RecordCreates(t, f), upstream: sampleUpstream(t, f.Nginx().UpstreamFile(Upstream)),
		load: fixture.StartLoad(t, f.Nginx().URL(Upstream), workers, Timeout), Began: time.Now()}
}

// Follow watches the rollout id (WatchRollout) until Finish.
func (r *Run) Follow(t testing.TB, id string) {
	t.Helper()
	r.ID = id
	r.Watch = r.fleet.API().WatchRollout(t, id, Timeout)
}

// Result is what one rollout did, as the API and the world saw it.
type Result struct {
	Final  grpcurl.Rollout
	Events []grpcurl.RolloutEvent
	Load   fixture.LoadReport
	// Drained are the servers the upstream file showed "down" at some
	// point; MaxDown is the most shown down at once.
	Drained map[string]bool
	MaxDown int
	// Creates are the images of the application containers Docker
	// created from Start to Finish, by container name; see Run.Creates.
	Creates map[string][]string
}

// Finish waits for the WatchRollout stream to end with the rollout, stops
// the load and the recorders, reads the rollout back and logs the
// figures: requests, failures, durations of the rollout and of each host.
func (r *Run) Finish(t testing.TB) Result {
	t.Helper()
	out := r.Watch.Wait(t)
	events := grpcurl.Messages[grpcurl.RolloutEvent](out)
	took := time.Since(r.Began)
	res := Result{Events: events, Load: r.load.Stop()}
	res.Drained, res.MaxDown = r.upstream.stop()
	t.Logf("WatchRollout printed %d events; the first as printed:\n%s\nall of them, one a line:\n%s",
		len(events), grpcurl.FirstMessage(out), eventLines(events, r.Began))
	final, err := r.fleet.API().GetRollout(r.ID)
	if err != nil {
		t.Fatalf("GetRollout %s: %v", r.ID, err)
	}
	if !grpcurl.Ended(final.State) {
		t.Fatalf("WatchRollout ended while rollout %s is %s", r.ID, final.State)
	}
	res.Final = final
	t.Logf("rollout %s to %s: %s in %s (%s); load through nginx: %d requests, %d failed, answers %v",
		final.ID, final.Image, final.State, took.Round(100*time.Millisecond), final.Message,
		res.Load.Requests, len(res.Load.Failures), res.Load.ByBody)
	for _, h := range r.fleet.AppHosts() {
		t.Logf("  %s (%s): %s", h.Name, h.AgentID, stepTimeline(events, h.AgentID))
	}
	return res
}

// FinishRecorded is Finish with Creates filled in: the recording of
// Docker's create events ends with the rollout.
func (r *Run) FinishRecorded(t testing.TB) Result {
	t.Helper()
	res := r.Finish(t)
	res.Creates = r.Creates(t)
	return res
}

// Creates ends the recording of Docker's create events (the first call;
// later ones return the same) and returns the images of the application
// containers created since Start, by container name. A caller that checks
// what happens after the rollout, an agent's reconnection say, calls it
// after Finish.
func (r *Run) Creates(t testing.TB) map[string][]string {
	t.Helper()
	return r.creates.Stop(t)
}

// HostStepAt returns when the stream has so far shown the agent's host
// reach step (rolling forward), and the step's message.
func (r *Run) HostStepAt(agentID, step string) (time.Time, string, bool) {
	for _, e := range r.Watch.RolloutEvents() {
		if h := e.Event.Host; h != nil && h.AgentID == agentID && h.Step == step && !h.RollingBack {
			return e.Event.At, h.Message, true
		}
	}
	return time.Time{}, "", false
}

// BatchStarted reports whether the stream has so far shown batch i start.
func (r *Run) BatchStarted(i int) bool {
	for _, e := range r.Watch.RolloutEvents() {
		if b := e.Event.Batch; b != nil && b.Index == i && b.Started {
			return true
		}
	}
	return false
}

// WatchAlive fails the test if the WatchRollout stream has ended before
// what the caller waits for.
func (r *Run) WatchAlive(t testing.TB, before string) {
	t.Helper()
	select {
	case <-r.Watch.Done():
		t.Fatalf("WatchRollout ended before %s: %v\n%s", before, r.Watch.Err(), grpcurl.Abridge(r.Watch.Output()))
	default:
	}
}

// errNotYet is what a poll returns until the stream shows what it waits for.
var errNotYet = fmt.Errorf("not yet")

// WaitHostStep waits until the stream shows the agent's host reach step.
func (r *Run) WaitHostStep(t testing.TB, timeout time.Duration, what, agentID, step string) {
	t.Helper()
	fixture.Eventually(t, timeout, what, func() error {
		r.WatchAlive(t, what)
		if _, _, ok := r.HostStepAt(agentID, step); ok {
			return nil
		}
		return errNotYet
	})
}
