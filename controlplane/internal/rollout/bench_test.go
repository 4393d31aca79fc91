package rollout_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// BenchmarkRollout1000Hosts rolls a service out to 1,000 fake hosts behind
// a load balancer, in batches of 10% with instant health (min_healthy_time
// 0, a heartbeat right after each restart). It reports the wall time per
// host of the whole rollout (pre-pull, drain, restart, health gate, undrain
// over the real gRPC stream, dispatcher and SQLite store, fake agents
// included), and engine-ns/host: the time the engine spent in its own
// reconciliation steps (store writes included) per host.
func BenchmarkRollout1000Hosts(b *testing.B) {
	const hosts = 1000
	c := newCluster(b, clusterOptions{web: hosts, lb: true, quiet: true, lostAfter: time.Minute, heartbeat: 5 * time.Second, tick: 10 * time.Millisecond})
	c.start()
	s := &flotillav1.RolloutStrategy{
		Batch:           &flotillav1.RolloutStrategy_BatchPercent{BatchPercent: 10},
		MinHealthyTime:  durationpb.New(0),
		HealthyDeadline: durationpb.New(time.Minute),
	}
	c.putService(s)
	var total time.Duration
	stepBefore := c.stepSeconds()
	b.ResetTimer()
	for i := range b.N {
		image := fmt.Sprintf("registry.example/app:bench-%d", i)
		start := time.Now()
		r := c.startRollout(image, nil)
		ctx, cancel := context.WithTimeout(operator(), 5*time.Minute)
		var last *flotillav1.RolloutEvent
		err := c.engine().WatchRollout(ctx, r.GetId(), func(ev *flotillav1.RolloutEvent) error { last = ev; return nil })
		cancel()
		total += time.Since(start)
		if err != nil || last.GetState().GetState() != stateSucceeded {
			b.Fatalf("rollout %d: %v, last event %v", i, err, last)
		}
	}
	b.StopTimer()
	engine := c.stepSeconds() - stepBefore
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*hosts), "ns/host")
	b.ReportMetric(engine*1e9/float64(b.N*hosts), "engine-ns/host")
}

// stepSeconds is the engine's total time in reconciliation steps so far.
func (c *cluster) stepSeconds() float64 {
	mfs, err := c.current().Server.Metrics().Gather()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "flotilla_rollout_engine_step_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleSum()
		}
	}
	return 0
}
