package promtext

import (
	"strings"
	"testing"
)

const exposition = `# HELP flotilla_agents Registered agents by liveness state.
# TYPE flotilla_agents gauge
flotilla_agents{state="connected"} 4998
flotilla_agents{state="disconnected"} 2
flotilla_agents{state="lost"} 0
# HELP flotilla_agent_info Always 1.
flotilla_agent_info{agent="agt-1",hostname="a}b \"q\"",state="connected"} 1
# TYPE flotilla_heartbeats_received_total counter
flotilla_heartbeats_received_total 1.234567e+06
process_cpu_seconds_total 12.5 1700000000000
process_resident_memory_bytes 3.1e+08
`

func TestReadKeepsOnlyWantedSeries(t *testing.T) {
	got, err := Read(strings.NewReader(exposition), "flotilla_agents", "flotilla_heartbeats_received_total", "process_cpu_seconds_total")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`flotilla_agents{state="connected"}`:    4998,
		`flotilla_agents{state="disconnected"}`: 2,
		`flotilla_agents{state="lost"}`:         0,
		`flotilla_heartbeats_received_total`:    1234567,
		`process_cpu_seconds_total`:             12.5,
	}
	if len(got) != len(want) {
		t.Errorf("Read returned %d series, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

func TestReadQuotedBraceInLabel(t *testing.T) {
	got, err := Read(strings.NewReader(exposition), "flotilla_agent_info")
	if err != nil {
		t.Fatal(err)
	}
	key := `flotilla_agent_info{agent="agt-1",hostname="a}b \"q\"",state="connected"}`
	if got[key] != 1 {
		t.Errorf("Read = %v, want %s = 1", got, key)
	}
}

func TestReadErrorsNameTheLine(t *testing.T) {
	for _, bad := range []string{
		"flotilla_heartbeats_received_total many\n",
		"# ok\nflotilla_heartbeats_received_total\n",
		`flotilla_heartbeats_received_total{a="b" 1` + "\n",
		"flotilla_heartbeats_received_total 1 2 3\n",
	} {
		_, err := Read(strings.NewReader(bad), "flotilla_heartbeats_received_total")
		if err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("Read(%q) error = %v, want one naming the line", bad, err)
		}
	}
	// A malformed line of another metric is not this reader's business.
	if _, err := Read(strings.NewReader("other_metric nonsense\n"), "flotilla_agents"); err != nil {
		t.Errorf("an unwanted malformed series failed the read: %v", err)
	}
}
