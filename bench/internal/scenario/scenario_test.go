package scenario

import (
	"context"
	"slices"
	"testing"
	"time"

	"flotilla.dev/bench/internal/harness"
	"flotilla.dev/bench/internal/procfs"

	"flotilla.dev/bench/internal/results"
)

const benchOutput = `goos: linux
goarch: amd64
pkg: flotilla.dev/controlplane/internal/rollout
cpu: AMD EPYC
BenchmarkRollout1000Hosts starting a cluster
BenchmarkRollout1000Hosts-2   	       3	4012345678 ns/op	   1337042 engine-ns/host	   4012345 ns/host
PASS
ok  	flotilla.dev/controlplane/internal/rollout	15.3s
`

func TestParseBenchmark(t *testing.T) {
	m, err := ParseBenchmark(benchOutput, "BenchmarkRollout1000Hosts")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"ns/op": 4012345678, "engine-ns/host": 1337042, "ns/host": 4012345}
	if len(m) != len(want) {
		t.Errorf("ParseBenchmark = %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	// Without the -GOMAXPROCS suffix (GOMAXPROCS=1).
	if _, err := ParseBenchmark("BenchmarkRollout1000Hosts 1 5 ns/op\n", "BenchmarkRollout1000Hosts"); err != nil {
		t.Errorf("line without a suffix: %v", err)
	}
	// A longer benchmark name sharing the prefix is another benchmark.
	if _, err := ParseBenchmark("BenchmarkRollout1000HostsSlow-2 1 5 ns/op\n", "BenchmarkRollout1000Hosts"); err == nil {
		t.Error("matched BenchmarkRollout1000HostsSlow, want no result")
	}
	for _, bad := range []string{"PASS\n", "BenchmarkRollout1000Hosts-2 1 5 ns/op 7\n", "BenchmarkRollout1000Hosts-2 1 x ns/op\n"} {
		if _, err := ParseBenchmark(bad, "BenchmarkRollout1000Hosts"); err == nil {
			t.Errorf("ParseBenchmark(%q) succeeded, want an error", bad)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 20000: "20,000", 1234567: "1,234,567", -45000: "-45,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestAtSize(t *testing.T) {
	cases := []struct {
		agents, size int
		ok           bool
		want         results.Met
	}{
		{500, 10000, true, results.NA},
		{500, 10000, false, results.NA},
		{10000, 10000, true, results.Yes},
		{20000, 10000, false, results.No},
	}
	for _, c := range cases {
		if got := atSize(c.agents, c.size, c.ok); got != c.want {
			t.Errorf("atSize(%d, %d, %v) = %q, want %q", c.agents, c.size, c.ok, got, c.want)
		}
	}
}

func TestFindAndFlags(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range All {
		if seen[s.Name] {
			t.Errorf("benchmark %q listed twice", s.Name)
		}
		seen[s.Name] = true
		if got, ok := Find(s.Name); !ok || got.Name != s.Name {
			t.Errorf("Find(%q) = %q, %v", s.Name, got.Name, ok)
		}
	}
	if _, ok := Find("all"); ok {
		t.Error(`Find("all") found a benchmark; "all" is the command's`)
	}
}

func TestReplicaNames(t *testing.T) {
	one := harness.Replicas{&harness.ControlPlane{}}
	three := harness.Replicas{&harness.ControlPlane{}, &harness.ControlPlane{}, &harness.ControlPlane{}}
	if got := replicasName(one, "RunCommand on controlplane"); got != "" {
		t.Errorf("one control plane's figures renamed: %q", got)
	}
	if got := replicasName(three, ""); got != " (3 replicas)" {
		t.Errorf("replicasName(3) = %q", got)
	}
	if got := replicasName(three, "RunCommand on replica-1"); got != " (3 replicas, RunCommand on replica-1)" {
		t.Errorf("replicasName(3, extra) = %q", got)
	}
	if got := replicasNote(context.Background(), one); got != "" {
		t.Errorf("replicasNote of one control plane = %q", got)
	}
}

func TestReplicaCPU(t *testing.T) {
	from := []procfs.Sample{{CPU: time.Second}, {CPU: 2 * time.Second}}
	to := []procfs.Sample{{CPU: 3 * time.Second}, {CPU: 2500 * time.Millisecond}}
	spent := cpuSpent(from, to)
	if want := []time.Duration{2 * time.Second, 500 * time.Millisecond}; !slices.Equal(spent, want) {
		t.Errorf("cpuSpent = %v, want %v", spent, want)
	}
	if got := sumDurations(spent); got != 2500*time.Millisecond {
		t.Errorf("sumDurations = %v", got)
	}
}
