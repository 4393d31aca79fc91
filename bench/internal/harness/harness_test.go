package harness

import (
	"context"
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

func TestReplicaConfigSharesTheFirstReplicasCA(t *testing.T) {
	e := &Env{Dir: t.TempDir()}
	first, err := e.newControlPlane("replica-1", "")
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.newControlPlane("replica-2", first.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if first.GRPCAddr == second.GRPCAddr || first.MetricsAddr == second.MetricsAddr || first.DataDir == second.DataDir {
		t.Errorf("replicas share ports or data: %+v and %+v", first, second)
	}
	if got := first.configYAML(CPConfig{}); strings.Contains(got, "tls:") {
		t.Errorf("the first replica, which generates the CA, is given one:\n%s", got)
	}
	got := second.configYAML(CPConfig{})
	for _, line := range []string{
		"tls:\n",
		"  ca_cert_file: \"" + first.DataDir + "/ca.crt\"\n",
		"  ca_key_file: \"" + first.DataDir + "/ca.key\"\n",
		"data_dir: \"" + second.DataDir + "\"\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("second replica's config lacks %q:\n%s", line, got)
		}
	}
	if second.Name() != "replica-2" || !strings.HasSuffix(second.configPath, "replica-2.yaml") {
		t.Errorf("second replica named %q with config %s", second.Name(), second.configPath)
	}
}

func TestCheckReplicas(t *testing.T) {
	for _, c := range []struct {
		n     int
		store string
		want  string
	}{
		{1, StoreSQLite, ""}, {1, StorePostgres, ""}, {3, StorePostgres, ""},
		{3, StoreSQLite, "-replicas 3 needs -store postgres"}, {0, StorePostgres, "-replicas must be at least 1"},
	} {
		err := CheckReplicas(c.n, c.store)
		if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckReplicas(%d, %s) = %v, want %q", c.n, c.store, err, c.want)
		}
	}
	// Refused before anything starts.
	e := &Env{Dir: t.TempDir(), store: StoreSQLite}
	if _, err := e.StartReplicas(context.Background(), CPConfig{}, 2); err == nil || !strings.Contains(err.Error(), "-replicas") {
		t.Errorf("StartReplicas(2) on SQLite = %v, want an error naming -replicas", err)
	}
}

func TestShare(t *testing.T) {
	for _, c := range []struct{ agents, n, min, max int }{
		{500, 1, 500, 500},
		// 50,000 over 3: 16,667 ± 105 (one standard deviation).
		{50000, 3, 17000, 17200},
		{300, 3, 100, 160},
	} {
		if got := Share(c.agents, c.n); got < c.min || got > c.max {
			t.Errorf("Share(%d, %d) = %d, want %d–%d", c.agents, c.n, got, c.min, c.max)
		}
	}
}
