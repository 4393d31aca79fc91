package harness

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"flotilla.dev/bench/internal/procfs"
)

// streamsMetric is the gauge of agent streams a control plane holds: each
// replica's own agents.
const streamsMetric = "flotilla_agent_streams"

// CheckReplicas returns an error naming the flag when n control planes
// cannot run on store: several replicas share one PostgreSQL database;
// SQLite serves one process.
func CheckReplicas(n int, store string) error {
	switch {
	case n < 1:
		return fmt.Errorf("-replicas must be at least 1, got %d", n)
	case n > 1 && store != StorePostgres:
		return fmt.Errorf("-replicas %d needs -store %s: replicas share one PostgreSQL database, and a SQLite store serves one control plane", n, StorePostgres)
	}
	return nil
}

// Replicas are a benchmark's control planes: one, or several replicas on
// the Env's one PostgreSQL database, sharing one CA, each on its own
// ports. The first is the one operators' calls go to unless a benchmark
// says otherwise.
type Replicas []*ControlPlane

// StartReplicas starts n control planes with cfg and waits until each
// serves. The first generates the CA and the bootstrap admin token in its
// data directory; the others are given its CA (tls.ca_cert_file,
// tls.ca_key_file) and the operator clients all use its token, which is in
// the one store. One control plane is StartControlPlane's, with its names.
func (e *Env) StartReplicas(ctx context.Context, cfg CPConfig, n int) (Replicas, error) {
	if err := CheckReplicas(n, e.store); err != nil {
		return nil, err
	}
	if n == 1 {
		c, err := e.StartControlPlane(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return Replicas{c}, nil
	}
	rs := make(Replicas, 0, n)
	for i := range n {
		ca := ""
		if i > 0 {
			ca = rs[0].DataDir
		}
		c, err := e.newControlPlane(fmt.Sprintf("replica-%d", i+1), ca)
		if err != nil {
			rs.Close()
			return nil, err
		}
		if err := c.start(ctx, cfg); err != nil {
			rs.Close()
			return nil, err
		}
		rs = append(rs, c)
	}
	e.Logf("%d replicas on one PostgreSQL: %s", n, strings.Join(rs.Addresses(), ", "))
	return rs, nil
}

// Name is the control plane's name in logs and figures: "controlplane",
// or "replica-<i>".
func (c *ControlPlane) Name() string { return c.name }

// Addresses are the replicas' agent API addresses, in order.
func (rs Replicas) Addresses() []string {
	out := make([]string, len(rs))
	for i, c := range rs {
		out[i] = c.GRPCAddr
	}
	return out
}

// Close closes every operator client.
func (rs Replicas) Close() {
	for _, c := range rs {
		c.Close()
	}
}

// CheckRunning returns an error when a replica has ended.
func (rs Replicas) CheckRunning() error {
	for _, c := range rs {
		if err := c.Proc.CheckRunning(); err != nil {
			return err
		}
	}
	return nil
}

// Sample reads every replica's RSS and CPU time, in order.
func (rs Replicas) Sample() ([]procfs.Sample, error) {
	out := make([]procfs.Sample, len(rs))
	for i, c := range rs {
		s, err := c.Sample()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		out[i] = s
	}
	return out, nil
}

// Scrape reads the named metrics from every replica's /metrics, in order,
// with the time each was read (see ControlPlane.Scrape).
func (rs Replicas) Scrape(ctx context.Context, names ...string) ([]map[string]float64, []time.Time, error) {
	values := make([]map[string]float64, len(rs))
	at := make([]time.Time, len(rs))
	for i, c := range rs {
		v, t, err := c.Scrape(ctx, names...)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", c.name, err)
		}
		values[i], at[i] = v, t
	}
	return values, at, nil
}

// Streams are the agent streams each replica holds (its
// flotilla_agent_streams gauge), in order.
func (rs Replicas) Streams(ctx context.Context) ([]int, error) {
	values, _, err := rs.Scrape(ctx, streamsMetric)
	if err != nil {
		return nil, err
	}
	out := make([]int, len(rs))
	for i, v := range values {
		n, ok := v[streamsMetric]
		if !ok {
			return nil, fmt.Errorf("%s: /metrics has no %s", rs[i].name, streamsMetric)
		}
		out[i] = int(n)
	}
	return out, nil
}

// Share is the most agents one of n replicas should expect when each of
// agents picks one at random: the mean plus four standard deviations of
// the binomial draw (one fleet in 30,000 gets more).
func Share(agents, n int) int {
	if n <= 1 {
		return agents
	}
	p := 1 / float64(n)
	return int(math.Ceil(float64(agents)*p + 4*math.Sqrt(float64(agents)*p*(1-p))))
}

// CheckCapacity fails when a replica could not hold a connection for
// each agent it may get within its open-file limit (see
// ControlPlane.CheckCapacity), with the limit named.
func (rs Replicas) CheckCapacity(agents int) error {
	if len(rs) == 1 {
		return rs[0].CheckCapacity(agents)
	}
	share := Share(agents, len(rs))
	for _, c := range rs {
		limit, ok, err := c.fits(share)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		if !ok {
			return fmt.Errorf("-agents %d over %d replicas: one may get up to %d (each agent picks one at random), and %s may open at most %d files (RLIMIT_NOFILE), one per agent plus about %d; add replicas (-replicas), raise the hard limit (ulimit -Hn) or run fewer agents",
				agents, len(rs), share, c.name, limit, capacityReserve)
		}
	}
	return nil
}

// WaitConnected polls until at least n agents are connected and returns
// when that was seen: for one control plane, as its fleet view counts
// them (ControlPlane.WaitConnected); for several, by the streams the
// replicas hold together, each replica's own and exact, while the fleet
// view of one lags by its refresh from the store. check, called on every
// poll, stops the wait with its error. Progress is printed every 5 s.
func (rs Replicas) WaitConnected(ctx context.Context, n int, timeout time.Duration, check func() error) (time.Time, error) {
	if len(rs) == 1 {
		return rs[0].WaitConnected(ctx, n, timeout, check)
	}
	start := time.Now()
	deadline := start.Add(timeout)
	lastReport := start
	for {
		if err := rs.CheckRunning(); err != nil {
			return time.Time{}, err
		}
		if check != nil {
			if err := check(); err != nil {
				return time.Time{}, err
			}
		}
		streams, err := rs.Streams(ctx)
		now := time.Now()
		got := sum(streams)
		if err == nil && got >= n {
			return now, nil
		}
		if now.After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d agents connected after %s (streams per replica %v; last error: %v)", got, n, timeout, streams, err)
		}
		if now.Sub(lastReport) >= 5*time.Second {
			rs[0].env.Logf("%d/%d agents connected (%s; per replica %v)", got, n, now.Sub(start).Round(time.Second), streams)
			lastReport = now
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// WaitFleetView polls the first replica's fleet view (ListAgents) until
// it counts n connected agents, every agent whichever replica holds its
// stream, and returns how long that took.
func (rs Replicas) WaitFleetView(ctx context.Context, n int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		got, err := rs[0].Connected(ctx)
		if err == nil && got >= n {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("%s's fleet view counts %d of %d agents connected after %s (last error: %v)", rs[0].name, got, n, timeout, err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}
