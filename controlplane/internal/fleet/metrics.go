package fleet

import (
	"github.com/prometheus/client_golang/prometheus"

	"flotilla.dev/controlplane/internal/store"
)

// Metric names are part of Flotilla's interface with Grafana dashboards and
// alert rules; the README lists them.
var (
	agentLabels = []string{"agent", "env", "role"}

	descAgents = prometheus.NewDesc("flotilla_agents",
		"Registered agents by liveness state.", []string{"state"}, nil)
	descInfo = prometheus.NewDesc("flotilla_agent_info",
		"Always 1; carries an agent's hostname, version and state as labels.",
		[]string{"agent", "env", "role", "hostname", "version", "state"}, nil)
	descUp = prometheus.NewDesc("flotilla_agent_up",
		"1 when the agent is connected, 0 otherwise.", agentLabels, nil)
	descHeartbeatAge = prometheus.NewDesc("flotilla_agent_heartbeat_age_seconds",
		"Seconds since the agent's last heartbeat.", agentLabels, nil)
	descCPU = prometheus.NewDesc("flotilla_agent_cpu_percent",
		"Host CPU busy percent (0-100), from the last heartbeat.", agentLabels, nil)
	descMemory = prometheus.NewDesc("flotilla_agent_memory_percent",
		"Host memory used percent, from the last heartbeat.", agentLabels, nil)
	descDisk = prometheus.NewDesc("flotilla_agent_disk_percent",
		"Disk used percent per path, from the last heartbeat.", append(agentLabels, "path"), nil)
	descLoad1 = prometheus.NewDesc("flotilla_agent_load1",
		"Host one-minute load average, from the last heartbeat.", agentLabels, nil)
	descAppHealthy = prometheus.NewDesc("flotilla_agent_app_healthy",
		"1 when the application's /health check passed in the last heartbeat.", agentLabels, nil)
	descHealthLatency = prometheus.NewDesc("flotilla_agent_app_health_latency_seconds",
		"Latency of the application's /health check in the last heartbeat.", agentLabels, nil)
	descDBConnections = prometheus.NewDesc("flotilla_agent_db_connections",
		"Open PostgreSQL connections per database, from the last heartbeat.", append(agentLabels, "database"), nil)
	descHeartbeats = prometheus.NewDesc("flotilla_heartbeats_received_total",
		"Heartbeats accepted from agents.", nil, nil)
)

// Collector exports the registry to Prometheus. It reads the registry at
// scrape time, so heartbeats never touch a metric: the cost of metrics is
// per scrape, not per heartbeat.
type Collector struct{ r *Registry }

// NewCollector returns a Collector for r.
func NewCollector(r *Registry) *Collector { return &Collector{r: r} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAgents, descInfo, descUp, descHeartbeatAge, descCPU, descMemory,
		descDisk, descLoad1, descAppHealthy, descHealthLatency, descDBConnections, descHeartbeats} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	now := r.cfg.Now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	counts := map[string]int{store.AgentConnected: 0, store.AgentDisconnected: 0, store.AgentLost: 0}
	for _, id := range r.ids {
		e := r.agents[id]
		counts[e.rec.State]++
		lv := []string{id, e.rec.Labels["env"], e.rec.Labels["role"]}
		gauge(ch, descInfo, 1, id, lv[1], lv[2], e.rec.Hostname, e.rec.Version, e.rec.State)
		up := 0.0
		if e.rec.State == store.AgentConnected {
			up = 1
		}
		gauge(ch, descUp, up, lv...)
		if !e.heartbeatAt.IsZero() {
			gauge(ch, descHeartbeatAge, now.Sub(e.heartbeatAt).Seconds(), lv...)
		}
		// Resource readings are exported only while the agent is connected:
		// a lost host's last CPU figure would otherwise look current forever.
		if e.rec.State != store.AgentConnected || e.lastHeartbeat == nil {
			continue
		}
		hb := e.lastHeartbeat
		if h := hb.GetHost(); h != nil {
			gauge(ch, descCPU, h.GetCpuPercent(), lv...)
			gauge(ch, descMemory, h.GetMemoryPercent(), lv...)
			gauge(ch, descLoad1, h.GetLoad1(), lv...)
			for _, d := range h.GetDisks() {
				gauge(ch, descDisk, d.GetUsedPercent(), lv[0], lv[1], lv[2], d.GetPath())
			}
		}
		if app := hb.GetApp(); app != nil {
			healthy := 0.0
			if app.GetHealthy() {
				healthy = 1
			}
			gauge(ch, descAppHealthy, healthy, lv...)
			gauge(ch, descHealthLatency, app.GetLatency().AsDuration().Seconds(), lv...)
		}
		for _, db := range hb.GetDatabases() {
			gauge(ch, descDBConnections, float64(db.GetConnections()), lv[0], lv[1], lv[2], db.GetName())
		}
	}
	for state, n := range counts {
		gauge(ch, descAgents, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(descHeartbeats, prometheus.CounterValue, float64(r.heartbeats))
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}
