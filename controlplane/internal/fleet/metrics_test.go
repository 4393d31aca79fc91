package fleet_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fleet"
)

const (
	helpAgents = `
# HELP flotilla_agents Registered agents by liveness state.
# TYPE flotilla_agents gauge
`
	helpUp = `
# HELP flotilla_agent_up 1 when the agent is connected, 0 otherwise.
# TYPE flotilla_agent_up gauge
`
	helpInfo = `
# HELP flotilla_agent_info Always 1; carries an agent's hostname and version as labels.
# TYPE flotilla_agent_info gauge
`
	helpState = `
# HELP flotilla_agent_state 1 for the agent's liveness state (connected, disconnected, lost), 0 for the others.
# TYPE flotilla_agent_state gauge
`
	helpAge = `
# HELP flotilla_agent_heartbeat_age_seconds Seconds since the agent's last heartbeat; with replicas, of an agent on another replica: since that replica last wrote every change of it.
# TYPE flotilla_agent_heartbeat_age_seconds gauge
`
	helpCPU = `
# HELP flotilla_agent_cpu_percent Host CPU busy percent (0-100), from the last heartbeat.
# TYPE flotilla_agent_cpu_percent gauge
`
	helpMemory = `
# HELP flotilla_agent_memory_percent Host memory used percent, from the last heartbeat.
# TYPE flotilla_agent_memory_percent gauge
`
	helpLoad = `
# HELP flotilla_agent_load1 Host one-minute load average, from the last heartbeat.
# TYPE flotilla_agent_load1 gauge
`
	helpDisk = `
# HELP flotilla_agent_disk_percent Disk used percent per path, from the last heartbeat.
# TYPE flotilla_agent_disk_percent gauge
`
	helpHealthy = `
# HELP flotilla_agent_app_healthy 1 when the application's /health check passed in the last heartbeat.
# TYPE flotilla_agent_app_healthy gauge
`
	helpLatency = `
# HELP flotilla_agent_app_health_latency_seconds Latency of the application's /health check in the last heartbeat.
# TYPE flotilla_agent_app_health_latency_seconds gauge
`
	helpDB = `
# HELP flotilla_agent_db_connections Open PostgreSQL connections per database, from the last heartbeat.
# TYPE flotilla_agent_db_connections gauge
`
	helpHeartbeats = `
# HELP flotilla_heartbeats_received_total Heartbeats accepted from agents.
# TYPE flotilla_heartbeats_received_total counter
`
)

var resourceMetrics = []string{
	"flotilla_agent_cpu_percent", "flotilla_agent_memory_percent", "flotilla_agent_load1",
	"flotilla_agent_disk_percent", "flotilla_agent_app_healthy", "flotilla_agent_app_health_latency_seconds",
	"flotilla_agent_db_connections", "flotilla_agent_wal_last_archived_timestamp_seconds",
	"flotilla_agent_wal_archived_segments_total", "flotilla_agent_wal_archive_failures_total",
	"flotilla_agent_wal_archive_missing_segments",
}

func TestCollector(t *testing.T) {
	st := openStore(t)
	clk := newClock(t0)
	r := newRegistry(t, st, clk)
	web := map[string]string{"env": "prod", "role": "web"}
	db := map[string]string{"env": "staging", "role": "db"}
	register(t, st, r, "a1", t0, web, nil)
	register(t, st, r, "a2", t0, db, nil)
	register(t, st, r, "a3", t0, web, nil) // never connects
	s1 := mustAttach(t, r, "a1", web, "10.0.0.1:5000")
	defer r.Detach(s1, reasonEOF)
	s2 := mustAttach(t, r, "a2", db, "10.0.0.2:5000")
	clk.Set(at(10 * time.Second))
	mustHeartbeat(t, r, s1, heartbeatMsg(12.5, true))
	hb2 := heartbeatMsg(80, false)
	mustHeartbeat(t, r, s2, hb2)
	clk.Set(at(12 * time.Second))
	r.Detach(s2, reasonEOF) // a2 has readings, but is no longer connected
	clk.Set(at(20 * time.Second))

	c := fleet.NewCollector(r)
	tests := []struct {
		name   string
		metric string
		want   string
	}{
		{"agents by state", "flotilla_agents", helpAgents + `
flotilla_agents{state="connected"} 1
flotilla_agents{state="disconnected"} 2
flotilla_agents{state="lost"} 0
`},
		{"up", "flotilla_agent_up", helpUp + `
flotilla_agent_up{agent="a1",env="prod",role="web"} 1
flotilla_agent_up{agent="a2",env="staging",role="db"} 0
flotilla_agent_up{agent="a3",env="prod",role="web"} 0
`},
		{"info", "flotilla_agent_info", helpInfo + `
flotilla_agent_info{agent="a1",env="prod",hostname="web-a1",role="web",version="v1.2.3"} 1
flotilla_agent_info{agent="a2",env="staging",hostname="web-a2",role="db",version="v1.2.3"} 1
flotilla_agent_info{agent="a3",env="prod",hostname="host-a3",role="web",version=""} 1
`},
		{"state: every state of every agent, 1 for the current", "flotilla_agent_state", helpState + `
flotilla_agent_state{agent="a1",env="prod",role="web",state="connected"} 1
flotilla_agent_state{agent="a1",env="prod",role="web",state="disconnected"} 0
flotilla_agent_state{agent="a1",env="prod",role="web",state="lost"} 0
flotilla_agent_state{agent="a2",env="staging",role="db",state="connected"} 0
flotilla_agent_state{agent="a2",env="staging",role="db",state="disconnected"} 1
flotilla_agent_state{agent="a2",env="staging",role="db",state="lost"} 0
flotilla_agent_state{agent="a3",env="prod",role="web",state="connected"} 0
flotilla_agent_state{agent="a3",env="prod",role="web",state="disconnected"} 1
flotilla_agent_state{agent="a3",env="prod",role="web",state="lost"} 0
`},
		{"heartbeat age only for agents that sent one", "flotilla_agent_heartbeat_age_seconds", helpAge + `
flotilla_agent_heartbeat_age_seconds{agent="a1",env="prod",role="web"} 10
flotilla_agent_heartbeat_age_seconds{agent="a2",env="staging",role="db"} 10
`},
		{"cpu only for connected agents", "flotilla_agent_cpu_percent", helpCPU + `
flotilla_agent_cpu_percent{agent="a1",env="prod",role="web"} 12.5
`},
		{"memory", "flotilla_agent_memory_percent", helpMemory + `
flotilla_agent_memory_percent{agent="a1",env="prod",role="web"} 40
`},
		{"load", "flotilla_agent_load1", helpLoad + `
flotilla_agent_load1{agent="a1",env="prod",role="web"} 0.5
`},
		{"disk per path", "flotilla_agent_disk_percent", helpDisk + `
flotilla_agent_disk_percent{agent="a1",env="prod",path="/",role="web"} 55
flotilla_agent_disk_percent{agent="a1",env="prod",path="/data",role="web"} 70
`},
		{"app healthy", "flotilla_agent_app_healthy", helpHealthy + `
flotilla_agent_app_healthy{agent="a1",env="prod",role="web"} 1
`},
		{"health latency", "flotilla_agent_app_health_latency_seconds", helpLatency + `
flotilla_agent_app_health_latency_seconds{agent="a1",env="prod",role="web"} 0.25
`},
		{"db connections", "flotilla_agent_db_connections", helpDB + `
flotilla_agent_db_connections{agent="a1",database="app",env="prod",role="web"} 7
`},
		{"WAL archiving", "flotilla_agent_wal_last_archived_timestamp_seconds", `
# HELP flotilla_agent_wal_last_archived_timestamp_seconds When the server of a database last archived a WAL segment (pg_stat_archiver), from the last heartbeat.
# TYPE flotilla_agent_wal_last_archived_timestamp_seconds gauge
flotilla_agent_wal_last_archived_timestamp_seconds{agent="a1",database="app",env="prod",role="web"} 1.796e+09
`},
		{"WAL archive failures", "flotilla_agent_wal_archive_failures_total", `
# HELP flotilla_agent_wal_archive_failures_total Failed attempts to archive a WAL segment (pg_stat_archiver.failed_count), from the last heartbeat.
# TYPE flotilla_agent_wal_archive_failures_total counter
flotilla_agent_wal_archive_failures_total{agent="a1",database="app",env="prod",role="web"} 3
`},
		{"WAL archive gaps per timeline", "flotilla_agent_wal_archive_missing_segments", `
# HELP flotilla_agent_wal_archive_missing_segments WAL segments missing from a database's archive between the first and the last archived segment of a timeline (the agent lists the WAL destination every few minutes), from the last heartbeat.
# TYPE flotilla_agent_wal_archive_missing_segments gauge
flotilla_agent_wal_archive_missing_segments{agent="a1",database="app",env="prod",role="web",timeline="1"} 0
flotilla_agent_wal_archive_missing_segments{agent="a1",database="app",env="prod",role="web",timeline="2"} 2
`},
		{"heartbeats", "flotilla_heartbeats_received_total", helpHeartbeats + `
flotilla_heartbeats_received_total 2
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := testutil.CollectAndCompare(c, strings.NewReader(tt.want), tt.metric); err != nil {
				t.Error(err)
			}
		})
	}

	t.Run("lint", func(t *testing.T) {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	})

	t.Run("lost agents export no readings", func(t *testing.T) {
		clk.Set(at(40 * time.Second)) // 30s after the last heartbeats
		r.Sweep()
		want := helpAgents + `
flotilla_agents{state="connected"} 0
flotilla_agents{state="disconnected"} 0
flotilla_agents{state="lost"} 3
` + helpUp + `
flotilla_agent_up{agent="a1",env="prod",role="web"} 0
flotilla_agent_up{agent="a2",env="staging",role="db"} 0
flotilla_agent_up{agent="a3",env="prod",role="web"} 0
` + helpAge + `
flotilla_agent_heartbeat_age_seconds{agent="a1",env="prod",role="web"} 30
flotilla_agent_heartbeat_age_seconds{agent="a2",env="staging",role="db"} 30
` + helpState + `
flotilla_agent_state{agent="a1",env="prod",role="web",state="connected"} 0
flotilla_agent_state{agent="a1",env="prod",role="web",state="disconnected"} 0
flotilla_agent_state{agent="a1",env="prod",role="web",state="lost"} 1
flotilla_agent_state{agent="a2",env="staging",role="db",state="connected"} 0
flotilla_agent_state{agent="a2",env="staging",role="db",state="disconnected"} 0
flotilla_agent_state{agent="a2",env="staging",role="db",state="lost"} 1
flotilla_agent_state{agent="a3",env="prod",role="web",state="connected"} 0
flotilla_agent_state{agent="a3",env="prod",role="web",state="disconnected"} 0
flotilla_agent_state{agent="a3",env="prod",role="web",state="lost"} 1
`
		if err := testutil.CollectAndCompare(c, strings.NewReader(want),
			"flotilla_agents", "flotilla_agent_up", "flotilla_agent_heartbeat_age_seconds", "flotilla_agent_state"); err != nil {
			t.Error(err)
		}
		if n := testutil.CollectAndCount(c, resourceMetrics...); n != 0 {
			t.Errorf("%d resource readings exported for a fleet with nobody connected, want 0", n)
		}
	})
}

// helpLeader heads the leader gauge in expected output.
const helpLeader = `# HELP flotilla_controlplane_fleet_leader 1 while this control plane exports the fleet-level series (it leads the fleet among replicas; always with one process), 0 otherwise.
# TYPE flotilla_controlplane_fleet_leader gauge`

func TestCollectorEmptyFleet(t *testing.T) {
	r := newRegistry(t, openStore(t), newClock(t0))
	want := helpAgents + `
flotilla_agents{state="connected"} 0
flotilla_agents{state="disconnected"} 0
flotilla_agents{state="lost"} 0
` + helpLeader + `
flotilla_controlplane_fleet_leader 1
` + helpHeartbeats + `
flotilla_heartbeats_received_total 0
`
	c := fleet.NewCollector(r)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// Without per-agent series a scrape carries the fleet's totals only, however
// many agents are connected and reporting.
func TestCollectorWithoutPerAgentSeries(t *testing.T) {
	st := openStore(t)
	clk := newClock(t0)
	r := newRegistry(t, st, clk)
	web := map[string]string{"env": "prod", "role": "web"}
	register(t, st, r, "a1", t0, web, nil)
	register(t, st, r, "a2", t0, web, nil)
	s1 := mustAttach(t, r, "a1", web, "10.0.0.1:5000")
	defer r.Detach(s1, reasonEOF)
	mustHeartbeat(t, r, s1, heartbeatMsg(12.5, true))
	mustHeartbeat(t, r, s1, heartbeatMsg(13, true))

	want := helpAgents + `
flotilla_agents{state="connected"} 1
flotilla_agents{state="disconnected"} 1
flotilla_agents{state="lost"} 0
` + helpLeader + `
flotilla_controlplane_fleet_leader 1
` + helpHeartbeats + `
flotilla_heartbeats_received_total 2
`
	c := fleet.NewCollector(r, fleet.WithoutPerAgentSeries())
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(fleet.NewCollector(r)); n <= 5 {
		t.Errorf("with per-agent series the same fleet gave only %d series", n)
	}
}

// containerHeartbeat is a heartbeat with a running container with a limit
// and an OOM kill behind it, a stopped one without a limit, and one the
// agent could not read.
func containerHeartbeat() *flotillav1.Heartbeat {
	hb := heartbeatMsg(10, true)
	hb.Containers = []*flotillav1.ManagedContainer{
		{Name: "api", State: "running", Resources: &flotillav1.ContainerResources{
			CpuPercent: 150, MemoryWorkingSetBytes: 50 << 20, MemoryUsageBytes: 80 << 20, MemoryLimitBytes: 64 << 20,
			RestartCount: 2, OomKills: 1}},
		{Name: "batch", State: "exited", Resources: &flotillav1.ContainerResources{RestartCount: 0, OomKills: 3, OomKilled: true}},
		{Name: "unread", State: "running"},
	}
	return hb
}

func TestCollectorContainerSeries(t *testing.T) {
	st := openStore(t)
	r := newRegistry(t, st, newClock(t0))
	web := map[string]string{"env": "prod", "role": "web"}
	register(t, st, r, "a1", t0, web, nil)
	s1 := mustAttach(t, r, "a1", web, "10.0.0.1:5000")
	mustHeartbeat(t, r, s1, containerHeartbeat())

	want := `
# HELP flotilla_container_cpu_percent CPU a managed container used since the agent's previous reading, percent of one CPU (200 = two CPUs), from the last heartbeat.
# TYPE flotilla_container_cpu_percent gauge
flotilla_container_cpu_percent{agent="a1",container="api",env="prod",role="web"} 150
# HELP flotilla_container_memory_working_set_bytes A running managed container's memory working set (usage minus inactive file cache), bytes, from the last heartbeat.
# TYPE flotilla_container_memory_working_set_bytes gauge
flotilla_container_memory_working_set_bytes{agent="a1",container="api",env="prod",role="web"} 5.24288e+07
# HELP flotilla_container_memory_usage_bytes A running managed container's raw memory usage (page cache included), bytes, from the last heartbeat.
# TYPE flotilla_container_memory_usage_bytes gauge
flotilla_container_memory_usage_bytes{agent="a1",container="api",env="prod",role="web"} 8.388608e+07
# HELP flotilla_container_memory_limit_bytes A managed container's memory limit, bytes; absent for a container without one.
# TYPE flotilla_container_memory_limit_bytes gauge
flotilla_container_memory_limit_bytes{agent="a1",container="api",env="prod",role="web"} 6.7108864e+07
# HELP flotilla_container_restarts_total Restarts of a managed container by Docker's restart policy (reset when the container is re-created).
# TYPE flotilla_container_restarts_total counter
flotilla_container_restarts_total{agent="a1",container="api",env="prod",role="web"} 2
flotilla_container_restarts_total{agent="a1",container="batch",env="prod",role="web"} 0
# HELP flotilla_container_oom_kills_total OOM kills of a managed container seen by its agent since the agent started.
# TYPE flotilla_container_oom_kills_total counter
flotilla_container_oom_kills_total{agent="a1",container="api",env="prod",role="web"} 1
flotilla_container_oom_kills_total{agent="a1",container="batch",env="prod",role="web"} 3
# HELP flotilla_container_oom_killed 1 when a managed container's last exit was an OOM kill, 0 otherwise.
# TYPE flotilla_container_oom_killed gauge
flotilla_container_oom_killed{agent="a1",container="api",env="prod",role="web"} 0
flotilla_container_oom_killed{agent="a1",container="batch",env="prod",role="web"} 1
`
	if err := testutil.CollectAndCompare(fleet.NewCollector(r), strings.NewReader(want), containerSeries...); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(fleet.NewCollector(r, fleet.WithoutPerAgentSeries()), containerSeries...); n != 0 {
		t.Errorf("per_agent_metrics false: %d container series exported, want 0", n)
	}
	r.Detach(s1, reasonEOF)
	if n := testutil.CollectAndCount(fleet.NewCollector(r), containerSeries...); n != 0 {
		t.Errorf("agent disconnected: %d container series exported, want 0", n)
	}
}

var containerSeries = []string{
	"flotilla_container_cpu_percent", "flotilla_container_memory_working_set_bytes", "flotilla_container_memory_usage_bytes",
	"flotilla_container_memory_limit_bytes", "flotilla_container_restarts_total", "flotilla_container_oom_kills_total",
	"flotilla_container_oom_killed",
}
