package harness

import (
	"os"
	"strings"
	"testing"
)

func TestParseStatusLine(t *testing.T) {
	got, err := parseStatusLine("flotilla-sim: status on http://127.0.0.1:40123, 5000 agents from index 8000\n")
	if err != nil || got != "http://127.0.0.1:40123" {
		t.Errorf("parseStatusLine = %q, %v; want http://127.0.0.1:40123", got, err)
	}
	for _, bad := range []string{
		"",
		`{"level":"warn","msg":"simulated fleet starting"}`,
		"flotilla-sim: status on 127.0.0.1:40123, 5 agents",
		"flotilla-sim: status on http://, 5 agents",
	} {
		if _, err := parseStatusLine(bad); err == nil {
			t.Errorf("parseStatusLine(%q) succeeded, want an error", bad)
		}
	}
}

func TestConfigYAML(t *testing.T) {
	c := &ControlPlane{DataDir: "/dev/shm/x/controlplane", GRPCAddr: "127.0.0.1:1", MetricsAddr: "127.0.0.1:2"}
	got := c.configYAML(CPConfig{})
	want := `data_dir: "/dev/shm/x/controlplane"
listen_address: "127.0.0.1:1"
metrics_address: "127.0.0.1:2"
registration_rate_limit:
  per_minute: 1000000
  burst: 100000
log:
  level: info
  format: json
`
	if got != want {
		t.Errorf("configYAML =\n%s\nwant\n%s", got, want)
	}
	got = c.configYAML(CPConfig{LogLevel: "warn", AgentLostAfter: 5e9, Profiling: true})
	for _, line := range []string{"  level: warn\n", "agent_lost_after: 5s\n", "profiling: true\n"} {
		if !strings.Contains(got, line) {
			t.Errorf("configYAML with options lacks %q:\n%s", line, got)
		}
	}
}

func TestProcessErrorsAndTail(t *testing.T) {
	dir := t.TempDir()
	log := dir + "/x.log"
	content := `{"level":"info","msg":"starting"}
{"level":"error","msg":"first"}
{"level":"warn","msg":"noise"}
panic: boom
{"level":"error","msg":"second"}
{"level":"warn","msg":"last"}
`
	if err := os.WriteFile(log, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Process{Name: "x", LogPath: log}
	if got, want := p.Errors(2), "{\"level\":\"error\",\"msg\":\"first\"}\npanic: boom\n"; got != want {
		t.Errorf("Errors(2) = %q, want %q", got, want)
	}
	if got, want := p.Tail(2), "{\"level\":\"error\",\"msg\":\"second\"}\n{\"level\":\"warn\",\"msg\":\"last\"}\n"; got != want {
		t.Errorf("Tail(2) = %q, want %q", got, want)
	}
	empty := &Process{Name: "y", LogPath: dir + "/missing.log"}
	if got := empty.Errors(5); got != "" {
		t.Errorf("Errors of a missing log = %q, want empty", got)
	}
}
