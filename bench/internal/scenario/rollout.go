package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"flotilla.dev/bench/internal/results"
)

const (
	rolloutBenchmark = "BenchmarkRollout1000Hosts"
	rolloutPackage   = "./controlplane/internal/rollout/"
	rolloutHosts     = 1000
)

// Rollout runs the rollout engine's Go benchmark (a rollout to 1,000 fake
// hosts over the real gRPC stream, dispatcher and SQLite store, in
// batches of 10 % with instant health) and records its per-host figures:
// the rollout's wall time per host, and the time the engine spent in its
// own reconciliation steps per host.
func Rollout(ctx context.Context, o Options) (figs []results.Figure, err error) {
	runs := or(o.Runs, o.quickN(1, 3))
	goBin := or(o.GoBin, "go")
	logFile, err := os.CreateTemp(or(o.TempRoot, os.TempDir()), "flotilla-bench-rollout-*.log")
	if err != nil {
		return nil, err
	}
	defer func() {
		logFile.Close()
		if err != nil {
			fmt.Fprintf(o.Out, "---- go test output (%s)\n", logFile.Name())
			b, _ := os.ReadFile(logFile.Name())
			fmt.Fprintf(o.Out, "%s\n", tailLines(string(b), 30))
		}
		if err == nil || !o.Keep {
			os.Remove(logFile.Name())
		}
	}()
	args := []string{"test", "-run", "^$", "-bench", "^" + rolloutBenchmark + "$",
		"-benchtime", fmt.Sprintf("%dx", runs), "-count", "1", "-timeout", "30m", rolloutPackage}
	o.logf("  %s %s", goBin, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = o.RepoRoot
	var out strings.Builder
	cmd.Stdout = io.MultiWriter(&out, logFile)
	cmd.Stderr = logFile
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s test -bench %s in %s: %w", goBin, rolloutBenchmark, filepath.Join(o.RepoRoot, rolloutPackage), err)
	}
	m, err := ParseBenchmark(out.String(), rolloutBenchmark)
	if err != nil {
		return nil, err
	}
	wall, okWall := m["ns/host"]
	engine, okEngine := m["engine-ns/host"]
	if !okWall || !okEngine {
		return nil, fmt.Errorf("%s reported %v, want ns/host and engine-ns/host", rolloutBenchmark, m)
	}
	const target = 5 * time.Millisecond
	notes := fmt.Sprintf("%sgo test -bench %s -benchtime %dx; health instant, min_healthy_time 0; fake agents in process",
		quickNote(o), rolloutBenchmark, runs)
	figs = []results.Figure{
		{Name: "rollout: wall time per host (1,000 hosts, 10 % batches)", Agents: rolloutHosts,
			Value: msPerHost(wall), Target: "≤ 5 ms per host", Met: results.MetIf(time.Duration(wall) <= target), Notes: notes},
		{Name: "rollout: engine step time per host", Agents: rolloutHosts,
			Value: msPerHost(engine), Target: "≤ 5 ms per host", Met: results.MetIf(time.Duration(engine) <= target), Notes: notes},
	}
	return figs, nil
}

func msPerHost(ns float64) string { return fmt.Sprintf("%.3f ms/host", ns/1e6) }

// ParseBenchmark reads the result line of benchmark name from go test
// output ("BenchmarkX-2   3   123 ns/op   4.5 ns/host") and returns its
// metrics by unit.
func ParseBenchmark(output, name string) (map[string]float64, error) {
	sc := bufio.NewScanner(strings.NewReader(output))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || (f[0] != name && !strings.HasPrefix(f[0], name+"-")) {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // a log line that starts with the name
		}
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("benchmark line %q: values and units do not pair up", sc.Text())
		}
		m := map[string]float64{}
		for i := 2; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: %q is not a number", sc.Text(), f[i])
			}
			m[f[i+1]] = v
		}
		return m, nil
	}
	return nil, errors.New("no result line for " + name + " in the go test output")
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
