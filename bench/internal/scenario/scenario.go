package scenario

import (
	"context"
	"fmt"
	"io"
	"time"

	"flotilla.dev/bench/internal/harness"
	"flotilla.dev/bench/internal/results"
)

// Options are the benchmarks' parameters. Zero values mean the
// benchmark's own default, which Quick shortens.
type Options struct {
	// Agents is the fleet size.
	Agents int
	// Quick shortens windows and repetitions (make bench, CI).
	Quick bool
	// BinDir holds the binaries; RepoRoot is the checkout (the rollout
	// benchmark runs go test there).
	BinDir, RepoRoot string
	// TempRoot is where temporary directories go (default /dev/shm).
	TempRoot string
	// Keep leaves the temporary directory for inspection.
	Keep bool
	// Out receives progress and the figures as they are measured.
	Out io.Writer

	// PerSim is the most agents per simulator process.
	PerSim int
	// SourceBase is the second octet of the first simulator's source
	// addresses (127.<SourceBase>.0.1).
	SourceBase int
	// ConnectTimeout bounds each wait for the fleet to connect.
	ConnectTimeout time.Duration
	// CPLogLevel is the control plane's log level (default info).
	CPLogLevel string

	// Interval is the agents' heartbeat interval.
	Interval time.Duration
	// Window is how long a rate or idle cost is measured.
	Window time.Duration
	// Settle is how long the fleet idles before the measurement.
	Settle time.Duration
	// Runs is how many times a measurement is repeated.
	Runs int
	// StartRate is agents started per second (0: all at once).
	StartRate float64
	// MaxBackoff caps the simulated agents' reconnection backoff (0: the
	// agent's default).
	MaxBackoff time.Duration
	// GoBin is the go command (the rollout benchmark).
	GoBin string
	// Profiling turns on the control planes' pprof (see harness.Options).
	Profiling bool
	// Store is the control planes' store driver (see harness.Options).
	Store string
	// SimNice lowers the simulators' scheduling priority (harness.SimConfig.Nice).
	SimNice int
	// Replicas is how many control planes the fleet benchmarks (connect,
	// heartbeats, fanout) run on one PostgreSQL database (0 or 1: one).
	Replicas int
}

// Scenario is one benchmark.
type Scenario struct {
	Name    string
	Summary string
	// Flags lists the Options fields the benchmark reads, by flag name,
	// so that the command offers only those. "store" (a flag every
	// benchmark has) marks one that runs a control plane on the chosen
	// store, whose figures then name it.
	Flags []string
	// Size is the fleet size the benchmark always uses (one agent, the
	// Go benchmark's 1,000 hosts), or 0 when -agents sets it.
	Size int
	Run  func(context.Context, Options) ([]results.Figure, error)
}

// All are the benchmarks in the order `all` runs them.
var All = []Scenario{
	{"connect", "N agents connect: time until all are connected, control-plane RSS per agent, idle CPU",
		[]string{"store", "replicas", "interval", "settle", "window", "start-rate"}, 0, Connect},
	{"heartbeats", "heartbeat ingest rate and the control plane's CPU (N agents at a short interval)",
		[]string{"store", "replicas", "interval", "window", "start-rate"}, 0, Heartbeats},
	{"fanout", "RunCommand to all N agents: latency to each agent's receipt and each host's started_at",
		[]string{"store", "replicas", "runs", "start-rate"}, 0, Fanout},
	{"reconnect", "control-plane restart under N agents: time until all are back; API latency meanwhile",
		[]string{"store", "max-backoff", "start-rate"}, 0, Reconnect},
	{"rollout", "the rollout engine's Go benchmark (1,000 hosts, 10% batches, instant health): time per host",
		[]string{"runs", "go"}, rolloutHosts, Rollout},
	{"agent-idle", "one real agent, idle: RSS, CPU, binary size",
		[]string{"store", "settle", "window"}, 1, AgentIdle},
	{"lost-agent", "a silent (SIGSTOPped) real agent with default settings: time from last heartbeat to lost",
		[]string{"store", "runs"}, 1, LostAgent},
}

// Find returns the named benchmark.
func Find(name string) (Scenario, bool) {
	for _, s := range All {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// or returns v unless it is the zero value, then def.
func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// quick picks the quick or the full default.
func (o Options) quick(quickV, fullV time.Duration) time.Duration {
	if o.Quick {
		return quickV
	}
	return fullV
}

// quickN picks the quick or the full default count.
func (o Options) quickN(quickV, fullV int) int {
	if o.Quick {
		return quickV
	}
	return fullV
}

func (o Options) logf(format string, args ...any) {
	if o.Out != nil {
		fmt.Fprintf(o.Out, format+"\n", args...)
	}
}

func (o Options) env(name string) (*harness.Env, error) {
	return harness.New(name, harness.Options{BinDir: o.BinDir, TempRoot: o.TempRoot, Keep: o.Keep, Profiling: o.Profiling, Store: o.Store, Out: o.Out})
}

func (o Options) connectTimeout() time.Duration {
	// Registration costs a key pair on the agent's side and a signature
	// and store writes on the control plane's, which admits a few at a
	// time and sheds the rest to retry later: 5,000 fresh agents took
	// two minutes on a loaded 2-core machine. Allow for that.
	return or(o.ConnectTimeout, max(3*time.Minute, time.Duration(o.Agents)*60*time.Millisecond))
}

// replicas is how many control planes the fleet benchmarks start.
func (o Options) replicas() int { return max(o.Replicas, 1) }

// fleet starts the control planes (one, or o.Replicas replicas) and n
// simulated agents and waits until all are connected; it returns when
// they were, measured from the simulators' start.
func (o Options) fleet(ctx context.Context, env *harness.Env, cfg harness.SimConfig) (harness.Replicas, *harness.Sims, time.Duration, error) {
	rs, err := env.StartReplicas(ctx, harness.FleetConfig(o.CPLogLevel, or(cfg.HeartbeatInterval, 10*time.Second)), o.replicas())
	if err != nil {
		return nil, nil, 0, err
	}
	sims, took, err := o.startSims(ctx, env, rs, cfg)
	return rs, sims, took, err
}

func (o Options) startSims(ctx context.Context, env *harness.Env, rs harness.Replicas, cfg harness.SimConfig) (*harness.Sims, time.Duration, error) {
	if err := rs.CheckCapacity(cfg.Agents); err != nil {
		return nil, 0, err
	}
	cfg.PerProcess, cfg.SourceBase, cfg.StartRate, cfg.Nice = o.PerSim, or(o.SourceBase, 101), o.StartRate, o.SimNice
	// One use per agent, exactly: an agent whose Register timed out on its
	// side after the control plane had done it retries with the same key
	// and gets the same agent back, without a second use (a 10,000-agent
	// run once failed here before Register was made idempotent). Replicas
	// share the store, so a token made on the first is good on each.
	tokenFile, pin, err := rs[0].JoinToken(ctx, cfg.Agents)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	sims, err := env.StartSims(ctx, rs.Addresses(), tokenFile, pin, cfg)
	if err != nil {
		return nil, 0, err
	}
	at, err := rs.WaitConnected(ctx, cfg.Agents, o.connectTimeout(), func() error { return sims.CheckAgents(ctx) })
	if err != nil {
		return nil, 0, err
	}
	took := at.Sub(start)
	env.Logf("all %d agents connected in %s", cfg.Agents, took.Round(time.Millisecond))
	return sims, took, nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	return nil
}

// atSize is the verdict for a target stated for a fleet of size: it can
// only be judged on a run at least that big.
func atSize(agents, size int, ok bool) results.Met {
	if agents < size {
		return results.NA
	}
	return results.MetIf(ok)
}

// kib formats bytes as KiB with one decimal.
func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

// mib formats bytes as MiB with one decimal.
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// thousands formats n with comma separators: 20000 → "20,000".
func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

func quickNote(o Options) string {
	if o.Quick {
		return "quick; "
	}
	return ""
}

// closeEnv stops env's processes; the logs' last lines are printed when
// the benchmark failed, but not when it was interrupted.
func closeEnv(ctx context.Context, env *harness.Env, err *error) {
	env.Close(*err != nil && ctx.Err() == nil)
}
