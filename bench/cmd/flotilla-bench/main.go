package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"flotilla.dev/bench/internal/harness"
	"flotilla.dev/bench/internal/procfs"
	"flotilla.dev/bench/internal/results"
	"flotilla.dev/bench/internal/scenario"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: flotilla-bench <benchmark> [flags]   (flotilla-bench <benchmark> -h lists its flags)")
	fmt.Fprintln(w, "\nbenchmarks:")
	for _, s := range scenario.All {
		fmt.Fprintf(w, "  %-11s %s\n", s.Name, s.Summary)
	}
	fmt.Fprintf(w, "  %-11s %s\n", "all", "every benchmark above, one after the other, at one fleet size")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	name := args[0]
	chosen, ok := chooseBenchmarks(name)
	if !ok {
		fmt.Fprintf(stderr, "flotilla-bench: unknown benchmark %q\n\n", name)
		usage(stderr)
		return 2
	}
	opts, resultsPath, noResults, err := parseFlags(name, chosen, args[1:], stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "flotilla-bench:", err)
		return 2
	}
	machine, err := procfs.ReadMachine()
	if err != nil {
		fmt.Fprintln(stderr, "flotilla-bench: machine:", err)
		return 1
	}
	rel, err := filepath.Rel(opts.RepoRoot, resultsPath)
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = "" // outside the checkout: it cannot make it dirty
	}
	commit := results.Commit(opts.RepoRoot, rel)
	fmt.Fprintf(stdout, "flotilla-bench: commit %s on %s; results to %s\n", commit, machine, resultsPath)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var failed []string
	for _, s := range chosen {
		if ctx.Err() != nil {
			break
		}
		rows, err := runBenchmark(ctx, s, opts, commit, machine.String(), stdout)
		if err != nil {
			fmt.Fprintf(stderr, "flotilla-bench: %s: %v\n", s.Name, err)
			failed = append(failed, s.Name)
			continue
		}
		if noResults {
			continue
		}
		if err := results.Append(resultsPath, rows); err != nil {
			fmt.Fprintln(stderr, "flotilla-bench:", err)
			return 1
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "flotilla-bench: interrupted")
		return 130
	}
	if len(failed) > 0 {
		fmt.Fprintf(stderr, "flotilla-bench: failed: %s\n", strings.Join(failed, ", "))
		return 1
	}
	return 0
}

// chooseBenchmarks returns the benchmark called name, or every one for
// "all"; false when there is no such benchmark.
func chooseBenchmarks(name string) ([]scenario.Scenario, bool) {
	if name == "all" {
		return scenario.All, true
	}
	if s, ok := scenario.Find(name); ok {
		return []scenario.Scenario{s}, true
	}
	return nil, false
}

// runBenchmark runs one benchmark, prints its figures and returns them as
// rows of the results file, each noting the load average at the start.
func runBenchmark(ctx context.Context, s scenario.Scenario, opts scenario.Options, commit, machine string, stdout io.Writer) ([]results.Row, error) {
	mode := ""
	if opts.Quick {
		mode = ", quick"
	}
	fmt.Fprintf(stdout, "== %s (%d agents%s)\n", s.Name, cmp.Or(s.Size, opts.Agents), mode)
	start := time.Now()
	// Others may use the machine too: a figure says under what load it
	// was measured.
	load := ""
	if l, err := procfs.LoadAverage(); err == nil {
		load = fmt.Sprintf("load average %.2f at start", l)
	}
	if slices.Contains(s.Flags, "store") {
		load = joinNotes(harness.StoreDescription(opts.Store, opts.TempRoot), load)
	}
	figs, err := s.Run(ctx, opts)
	if err != nil {
		return nil, err
	}
	rows := make([]results.Row, len(figs))
	now := time.Now()
	for i, f := range figs {
		f.Notes = joinNotes(f.Notes, load)
		rows[i] = results.Row{Time: now, Commit: commit, Machine: machine, Figure: f}
		fmt.Fprintf(stdout, "  %-70s %s   [target %s: %s]\n", f.Name, f.Value, f.Target, f.Met)
	}
	fmt.Fprintf(stdout, "  (%s in %s)\n", s.Name, time.Since(start).Round(time.Second))
	return rows, nil
}

// parseFlags reads the flags common to every benchmark and those of the
// chosen ones.
func parseFlags(name string, chosen []scenario.Scenario, args []string, stdout, stderr io.Writer) (o scenario.Options, resultsPath string, noResults bool, err error) {
	fs := flag.NewFlagSet("flotilla-bench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := repoRoot()
	o.Replicas = 1 // for the benchmarks without -replicas
	fs.IntVar(&o.Agents, "agents", 500, "fleet size")
	fs.BoolVar(&o.Quick, "quick", false, "shorter windows and fewer repetitions (make bench)")
	fs.StringVar(&o.RepoRoot, "repo", root, "the Flotilla checkout")
	fs.StringVar(&o.BinDir, "bin", "", "directory of flotilla-controlplane, flotilla-sim and flotilla-agent (default <repo>/bin)")
	fs.StringVar(&resultsPath, "results", "", "results file to append to (default <repo>/bench/results.md)")
	fs.BoolVar(&noResults, "no-results", false, "print the figures without appending them to the results file")
	fs.StringVar(&o.TempRoot, "temp", "", "directory for the temporary data, state and logs (default /dev/shm)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary directory (logs, data) after the run")
	fs.IntVar(&o.PerSim, "agents-per-sim", 8000, "most agents per simulator process (each holds 2 open files per agent)")
	fs.IntVar(&o.SimNice, "sim-nice", 0, "run the simulators at this nice value (1-19), so that a large fleet's connection storm does not starve the control planes and the store on a shared machine")
	fs.IntVar(&o.SourceBase, "source-base", 101, "simulator i connects from 127.<source-base+i>.0.1 and the 31 addresses after it")
	fs.DurationVar(&o.ConnectTimeout, "connect-timeout", 0, "how long to wait for the fleet to connect (default max(3m, 60ms per agent))")
	fs.StringVar(&o.CPLogLevel, "cp-log-level", "info", "control-plane log level")
	fs.StringVar(&o.Store, "store", harness.StoreSQLite, "the control plane's store: sqlite, or postgres (a throwaway PostgreSQL cluster under -temp, fsync on)")
	fs.BoolVar(&o.Profiling, "profiling", false, "serve the control plane's pprof on its metrics address (printed); costs CPU, so use it to find costs, not to measure figures")

	addBenchmarkFlags(fs, &o, chosen)
	if err := fs.Parse(args); err != nil {
		return o, "", false, err
	}
	if fs.NArg() > 0 {
		return o, "", false, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := checkOptions(&o); err != nil {
		return o, "", false, err
	}
	if o.BinDir == "" {
		o.BinDir = filepath.Join(o.RepoRoot, "bin")
	}
	if resultsPath == "" {
		resultsPath = filepath.Join(o.RepoRoot, "bench", "results.md")
	}
	if resultsPath, err = filepath.Abs(resultsPath); err != nil {
		return o, "", false, fmt.Errorf("-results: %w", err)
	}
	o.Out = stdout
	return o, resultsPath, noResults, nil
}

// addBenchmarkFlags adds the flags that only some benchmarks read, those
// of the chosen ones. With `all`, a flag applies to every benchmark that
// reads it, which rarely makes sense for windows and intervals; the
// per-benchmark defaults apply unless given.
func addBenchmarkFlags(fs *flag.FlagSet, o *scenario.Options, chosen []scenario.Scenario) {
	wanted := map[string]bool{}
	for _, s := range chosen {
		for _, f := range s.Flags {
			wanted[f] = true
		}
	}
	if wanted["interval"] {
		fs.DurationVar(&o.Interval, "interval", 0, "agents' heartbeat interval (default: connect 10s, heartbeats 1s)")
	}
	if wanted["window"] {
		fs.DurationVar(&o.Window, "window", 0, "measurement window (default: connect 3 heartbeat intervals, heartbeats 30s, agent-idle 60s; shorter with -quick)")
	}
	if wanted["settle"] {
		fs.DurationVar(&o.Settle, "settle", 0, "idle time before measuring (default: connect 2 heartbeat intervals, agent-idle 10s)")
	}
	if wanted["runs"] {
		fs.IntVar(&o.Runs, "runs", 0, "repetitions (default: fanout 5, rollout 3, lost-agent 3; fewer with -quick)")
	}
	if wanted["start-rate"] {
		fs.Float64Var(&o.StartRate, "start-rate", 0, "simulated agents started per second over the fleet (0: all at once)")
	}
	if wanted["max-backoff"] {
		fs.DurationVar(&o.MaxBackoff, "max-backoff", 0, "cap of the simulated agents' reconnection backoff (0: the agent's default, 30s)")
	}
	if wanted["replicas"] {
		fs.IntVar(&o.Replicas, "replicas", 1, "control planes on one PostgreSQL database (needs -store postgres when above 1); the agents spread over them at random")
	}
	if wanted["go"] {
		fs.StringVar(&o.GoBin, "go", "go", "the go command")
	}
}

// checkOptions validates the common options and makes the checkout's path
// absolute.
func checkOptions(o *scenario.Options) error {
	if o.Agents < 1 {
		return fmt.Errorf("-agents must be at least 1, got %d", o.Agents)
	}
	if o.PerSim < 1 {
		return fmt.Errorf("-agents-per-sim must be at least 1, got %d", o.PerSim)
	}
	if err := harness.CheckStore(o.Store); err != nil {
		return err
	}
	if err := harness.CheckReplicas(o.Replicas, o.Store); err != nil {
		return err
	}
	if o.SimNice < 0 || o.SimNice > 19 {
		return fmt.Errorf("-sim-nice must be 0-19, got %d", o.SimNice)
	}
	if o.SourceBase < 1 || o.SourceBase > 254 {
		return fmt.Errorf("-source-base must be 1-254, got %d", o.SourceBase)
	}
	if o.RepoRoot == "" {
		return errors.New("-repo: not inside a git checkout; give the Flotilla checkout")
	}
	var err error
	if o.RepoRoot, err = filepath.Abs(o.RepoRoot); err != nil {
		return fmt.Errorf("-repo: %w", err)
	}
	return nil
}

// joinNotes joins two notes with "; ", either of which may be empty.
func joinNotes(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

// repoRoot is the top of the git checkout around the working directory,
// or "".
func repoRoot() string {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
