package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/rollouttest"
)

// TestReplicaFailover runs three control-plane replicas on one PostgreSQL
// database, sharing one CA, with nine real agents given the three
// addresses (three application hosts behind Nginx, the load balancer,
// five spare hosts), and breaks one replica at a time (issue 13, "Faults
// to test end to end"; docs/ha.md gives the figures):
//
//   - the replica driving a rollout is SIGKILLed mid-batch: another takes
//     the rollout over within the lease + 5 s and finishes it, every
//     container created once, no request through Nginx failing;
//   - the replica holding the most agents is SIGKILLed: every agent is
//     back on another within 30 s, none is ever reported lost, and the
//     commands issued meanwhile reach every agent and run once;
//   - the replica driving a rollout is cut off from PostgreSQL for 20 s: it
//     stops driving the rollout (it cannot renew its lease), another takes
//     it over and finishes it, and the replica, which keeps running,
//     rejoins when the cut ends;
//   - the replica driving a rollout is paused (SIGSTOP) past its lease and
//     resumed after another took the rollout over: it stops driving it (a
//     late write would be refused by the fencing token) and rejoins, and
//     the rollout ends as if nothing happened.
//
// After a SIGKILL the replica is started again (as systemd's Restart=
// would) before the next fault.
func TestReplicaFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	began := time.Now()
	f := newFailoverEnv(t)
	t.Logf("3 replicas, %d agents, registry, Nginx ready in %s", f.agentCount(), time.Since(began).Round(100*time.Millisecond))
	for _, s := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"rollout driver killed mid-batch", f.testDriverKilled},
		{"replica holding the most agents killed", f.testAgentsReplicaKilled},
		{"agents spread again over the replicas", f.testAgentsSpreadAgain},
		{"rollout driver cut off from PostgreSQL", f.testDriverCutOff},
		{"rollout driver paused past its lease", f.testDriverPaused},
	} {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

// breakDriverMidBatch starts a rollout to version through one replica,
// follows it on another, waits until the second batch's host is
// restarting and breaks the replica driving it. It returns the run, the
// driver, its lease before the fault and when the fault happened.
func (f *failoverEnv) breakDriverMidBatch(t *testing.T, version, reason string, breakIt func(*replica)) (*rollouttest.Run, *replica, lease, time.Time) {
	t.Helper()
	placed := f.ready(t)
	t.Logf("agents by replica: %s", f.describePlacement(t, placed))
	starter := f.set.replicas[0]
	via := f.via(starter)
	run := rollouttest.Start(t, via, fmt.Sprintf(`{"service": %q, "image": %q, "reason": %q}`,
		rollouttest.Service, f.images[version], reason), rollouttest.LoadWorkers)
	watcher := f.set.other(t, starter)
	run.Watch = f.apiOn(watcher).WatchRollout(t, run.ID, rollouttest.Timeout)
	var second string
	fixture.Eventually(t, rollouttest.Timeout, "the second batch's host to restart", func() error {
		run.WatchAlive(t, "the second batch")
		if second == "" {
			r, err := f.apiOn(watcher).GetRollout(run.ID)
			if err != nil {
				return err
			}
			if len(r.Batches) < 2 || len(r.Batches[1].AgentIDs) == 0 {
				return fmt.Errorf("batches %+v", r.Batches)
			}
			second = r.Batches[1].AgentIDs[0]
		}
		if _, _, ok := run.HostStepAt(second, "HOST_STEP_RESTARTING"); ok {
			return nil
		}
		return fmt.Errorf("not yet")
	})
	driver, before := f.driver(t, run.ID)
	f.watchOn(t, run, via, watcher, driver)
	breakIt(driver)
	at := time.Now()
	t.Logf("%s (lease rollout/%s, token %d) broken %s after StartRollout, %s restarting in the second batch",
		driver.name, run.ID, before.Token, at.Sub(run.Began).Round(100*time.Millisecond), rollouttest.HostOf(t, f, second).Name)
	return run, driver, before, at
}

// nextVersion is the release the application hosts do not run: v2 when
// they run v1, v1 otherwise. Each rollout scenario moves the fleet to it,
// whatever the scenarios before it (or a -run filter) left.
func (f *failoverEnv) nextVersion(t *testing.T) string {
	t.Helper()
	if f.docker.Inspect(t, f.hosts[0].container).Config.Image == f.images["v1"] {
		return "v2"
	}
	return "v1"
}

// finishTakenOver waits for the rollout taken over after the fault to end
// and checks it as a rollout with no fault: succeeded, each host through
// its steps once, every container created once from image, no failed
// request; it logs the figures.
func (f *failoverEnv) finishTakenOver(t *testing.T, run *rollouttest.Run, version string, brokenAt time.Time, takeover time.Duration) {
	t.Helper()
	res := run.FinishRecorded(t)
	if e, ok := firstEventAfter(res.Events, brokenAt); ok {
		t.Logf("first rollout event after the fault: %s, %s after it", describeEvent(e), e.Event.At.Sub(brokenAt).Round(100*time.Millisecond))
	}
	created := 0
	for _, images := range res.Creates {
		created += len(images)
	}
	t.Logf("FIGURES: takeover %s (lease TTL %s); rollout %s in %s; load %d requests, %d failed; %d containers created for %d hosts",
		takeover.Round(100*time.Millisecond), f.ttl, res.Final.State, time.Since(run.Began).Round(100*time.Millisecond),
		res.Load.Requests, len(res.Load.Failures), created, len(f.AppHosts()))
	if res.Final.State != "ROLLOUT_STATE_SUCCEEDED" {
		t.Fatalf("the rollout taken over ended %s: %s", res.Final.State, res.Final.Message)
	}
	checkForwardOnce(t, f, res)
	rollouttest.CheckNoFailures(t, "the rollout taken over", res.Load)
	rollouttest.CheckCreatedOnce(t, f, res, f.images[version])
	rollouttest.CheckAllRun(t, f, version)
}

// testDriverKilled SIGKILLs the replica driving a rollout to the other
// release (v2 on a fresh fleet) while the second batch's host restarts.
func (f *failoverEnv) testDriverKilled(t *testing.T) {
	version := f.nextVersion(t)
	run, driver, before, killed := f.breakDriverMidBatch(t, version, "release "+version+", its driver killed", func(r *replica) { r.kill(t) })
	next, l, took := f.waitTakeover(t, "rollout/"+run.ID, before, killed)
	t.Logf("%s took rollout %s over %s after %s was SIGKILLed (token %d → %d)", next.name, run.ID, took.Round(100*time.Millisecond), driver.name, before.Token, l.Token)
	if took > f.ttl+takeoverSlack {
		t.Errorf("takeover took %s, want within the lease TTL %s + %s", took, f.ttl, takeoverSlack)
	}
	f.finishTakenOver(t, run, version, killed, took)
	f.restartIfDown(t, driver)
}

// cutFor is how long the cut-off replica stays cut: longer than its
// lease, so that its replica lease lapses too.
const cutFor = 20 * time.Second

// testDriverCutOff cuts the replica driving a rollout to the other
// release off from PostgreSQL for 20 s while the second batch's host
// restarts. The replica cannot renew its leases: it stops driving the
// rollout before the rollout's lease can expire, and another replica takes
// the rollout over and finishes it. The replica itself keeps running (its agents' streams
// stay with it, served from memory) and, when the cut ends, takes its
// replica lease again and claims its streams again.
func (f *failoverEnv) testDriverCutOff(t *testing.T) {
	version := f.nextVersion(t)
	run, driver, before, cut := f.breakDriverMidBatch(t, version, "release "+version+", its driver cut off", func(r *replica) { r.pg.Cut() })
	proc := driver.process()
	states := watchAgentStates(t, f.apiOn(f.set.other(t, driver)))
	next, l, took := f.waitTakeover(t, "rollout/"+run.ID, before, cut)
	t.Logf("%s took rollout %s over %s after %s was cut off from PostgreSQL (token %d → %d)", next.name, run.ID, took.Round(100*time.Millisecond), driver.name, before.Token, l.Token)
	if took > f.ttl+takeoverSlack {
		t.Errorf("takeover took %s, want within the lease TTL %s + %s", took, f.ttl, takeoverSlack)
	}
	fixture.Eventually(t, f.ttl+30*time.Second, driver.name+" to stop driving the rollout", func() error {
		if !stoppedDriving(proc.Output(), run.ID) {
			return fmt.Errorf("%s has not said it stopped driving the rollout %s after the cut", driver.name, time.Since(cut).Round(100*time.Millisecond))
		}
		return nil
	})
	t.Logf("%s stopped driving the rollout: %s", driver.name, leaseLines(proc.Output()))
	time.Sleep(time.Until(cut.Add(cutFor)))
	refused := driver.pg.Refused()
	driver.pg.Restore()
	restored := time.Now()
	t.Logf("the cut ended %s after it began (%d connections refused meanwhile)", restored.Sub(cut).Round(100*time.Millisecond), refused)
	if proc.Exited() {
		t.Errorf("%s exited during the cut (code %d), want it to keep serving and rejoin:\n%s", driver.name, proc.Wait(t, time.Second), lastLine(proc.Output()))
		f.restartIfDown(t, driver)
	}
	f.waitRejoined(t, driver, "the cut ended", restored)
	f.finishTakenOver(t, run, version, cut, took)
	// Not asserted: the agents whose streams stayed on the cut-off replica
	// are counted as held by no live replica once its lease lapsed, and the
	// fleet leader may list them lost until it claims them again.
	t.Logf("FIGURES: agent states seen on another replica from the cut to the end: %s", states.stop().describe())
}

// waitRejoined waits until the replica holds its replica lease again and
// every agent is connected to a running replica, and logs how long it
// took from since, when what happened.
func (f *failoverEnv) waitRejoined(t *testing.T, r *replica, what string, since time.Time) {
	t.Helper()
	fixture.Eventually(t, f.ttl+30*time.Second, r.name+" to hold its replica lease again", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l, ok, err := f.set.replicaLease(ctx, r)
		if err != nil || !ok || l.Expired {
			return fmt.Errorf("replica lease of %s: %+v (found %v): %v", r.name, l, ok, err)
		}
		return nil
	})
	live := time.Since(since)
	placed := f.ready(t)
	t.Logf("%s live again %s after %s, the fleet whole %s after: %s", r.name, live.Round(100*time.Millisecond), what,
		time.Since(since).Round(100*time.Millisecond), f.describePlacement(t, placed))
}

// testDriverPaused stops (SIGSTOP) the replica driving a rollout to the
// other release while the second batch's host restarts, as a long GC
// pause or a VM migration would, and resumes it once another replica has
// taken the rollout over. Its timers fire late, all at once: it must stop driving
// the rollout (its monotonic clock shows the lease's window passed; a
// write that got out first would carry the old fencing token and be
// refused), take its own lapsed replica lease again and rejoin. The
// rollout must end as if nothing happened.
func (f *failoverEnv) testDriverPaused(t *testing.T) {
	version := f.nextVersion(t)
	run, driver, before, paused := f.breakDriverMidBatch(t, version, "release "+version+", its driver paused", func(r *replica) {
		r.process().Signal(syscall.SIGSTOP)
	})
	proc := driver.process()
	next, l, took := f.waitTakeover(t, "rollout/"+run.ID, before, paused)
	t.Logf("%s took rollout %s over %s after %s was paused (token %d → %d)", next.name, run.ID, took.Round(100*time.Millisecond), driver.name, before.Token, l.Token)
	if took > f.ttl+takeoverSlack {
		t.Errorf("takeover took %s, want within the lease TTL %s + %s", took, f.ttl, takeoverSlack)
	}
	proc.Signal(syscall.SIGCONT)
	resumed := time.Now()
	t.Logf("%s resumed %s after it was paused", driver.name, resumed.Sub(paused).Round(100*time.Millisecond))
	fixture.Eventually(t, f.ttl+30*time.Second, driver.name+" to stop driving rollout "+run.ID, func() error {
		if !stoppedDriving(proc.Output(), run.ID) {
			return fmt.Errorf("%s has not said it stopped driving the rollout yet", driver.name)
		}
		return nil
	})
	t.Logf("%s stopped driving the rollout %s after it resumed; its lines about leases and fencing:\n%s", driver.name,
		time.Since(resumed).Round(100*time.Millisecond), leaseLines(proc.Output()))
	if proc.Exited() {
		t.Errorf("%s exited after it resumed (code %d), want it to keep serving and rejoin:\n%s", driver.name, proc.Wait(t, time.Second), lastLine(proc.Output()))
		f.restartIfDown(t, driver)
	}
	f.waitRejoined(t, driver, "it resumed", resumed)
	f.finishTakenOver(t, run, version, paused, took)
}

// stoppedDriving reports whether a replica's output says it stopped
// driving the rollout.
func stoppedDriving(out, rolloutID string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "stopped driving the rollout") && strings.Contains(line, rolloutID) {
			return true
		}
	}
	return false
}

// leaseLines are the lines of a replica's output about losing leases,
// stepping down and fencing.
func leaseLines(out string) string {
	var kept []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "fenced") || strings.Contains(line, "lease lost") || strings.Contains(line, "stopped driving") {
			kept = append(kept, strings.TrimSpace(line))
		}
	}
	return strings.Join(kept, "\n")
}
