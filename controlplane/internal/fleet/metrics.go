package fleet

import (
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
)

// Metric names are part of Flotilla's interface with Grafana dashboards and
// alert rules; the README lists them.
var (
	agentLabels = []string{"agent", "env", "role"}

	descAgents = prometheus.NewDesc("flotilla_agents",
		"Registered agents by liveness state.", []string{"state"}, nil)
	descInfo = agentDesc("flotilla_agent_info",
		"Always 1; carries an agent's hostname and version as labels.", "hostname", "version")
	// descState has one series per agent and state, all exported at every
	// scrape, so a state change moves a 1 between series instead of ending
	// one series and starting another (which alerting with for: cannot follow).
	descState = agentDesc("flotilla_agent_state",
		"1 for the agent's liveness state (connected, disconnected, lost), 0 for the others.", "state")
	descUp = agentDesc("flotilla_agent_up",
		"1 when the agent is connected, 0 otherwise.")
	descHeartbeatAge = agentDesc("flotilla_agent_heartbeat_age_seconds",
		"Seconds since the agent's last heartbeat; with replicas, of an agent on another replica: since that replica last wrote every change of it.")
	descCPU = agentDesc("flotilla_agent_cpu_percent",
		"Host CPU busy percent (0-100), from the last heartbeat.")
	descMemory = agentDesc("flotilla_agent_memory_percent",
		"Host memory used percent, from the last heartbeat.")
	descDisk = agentDesc("flotilla_agent_disk_percent",
		"Disk used percent per path, from the last heartbeat.", "path")
	descLoad1 = agentDesc("flotilla_agent_load1",
		"Host one-minute load average, from the last heartbeat.")
	descAppHealthy = agentDesc("flotilla_agent_app_healthy",
		"1 when the application's /health check passed in the last heartbeat.")
	descHealthLatency = agentDesc("flotilla_agent_app_health_latency_seconds",
		"Latency of the application's /health check in the last heartbeat.")
	descDBConnections = agentDesc("flotilla_agent_db_connections",
		"Open PostgreSQL connections per database, from the last heartbeat.", "database")
	descWALArchivedAt = agentDesc("flotilla_agent_wal_last_archived_timestamp_seconds",
		"When the server of a database last archived a WAL segment (pg_stat_archiver), from the last heartbeat.", "database")
	descWALArchived = agentDesc("flotilla_agent_wal_archived_segments_total",
		"WAL segments the server of a database archived (pg_stat_archiver.archived_count), from the last heartbeat.", "database")
	descWALFailed = agentDesc("flotilla_agent_wal_archive_failures_total",
		"Failed attempts to archive a WAL segment (pg_stat_archiver.failed_count), from the last heartbeat.", "database")
	descWALMissing = agentDesc("flotilla_agent_wal_archive_missing_segments",
		"WAL segments missing from a database's archive between the first and the last archived segment of a timeline (the agent lists the WAL destination every few minutes), from the last heartbeat.", "database", "timeline")
	descContainerCPU = agentDesc("flotilla_container_cpu_percent",
		"CPU a managed container used since the agent's previous reading, percent of one CPU (200 = two CPUs), from the last heartbeat.", "container")
	descContainerWorkingSet = agentDesc("flotilla_container_memory_working_set_bytes",
		"A running managed container's memory working set (usage minus inactive file cache), bytes, from the last heartbeat.", "container")
	descContainerUsage = agentDesc("flotilla_container_memory_usage_bytes",
		"A running managed container's raw memory usage (page cache included), bytes, from the last heartbeat.", "container")
	descContainerLimit = agentDesc("flotilla_container_memory_limit_bytes",
		"A managed container's memory limit, bytes; absent for a container without one.", "container")
	descContainerRestarts = agentDesc("flotilla_container_restarts_total",
		"Restarts of a managed container by Docker's restart policy (reset when the container is re-created).", "container")
	descContainerOOMKills = agentDesc("flotilla_container_oom_kills_total",
		"OOM kills of a managed container seen by its agent since the agent started.", "container")
	descContainerOOMKilled = agentDesc("flotilla_container_oom_killed",
		"1 when a managed container's last exit was an OOM kill, 0 otherwise.", "container")
	descHeartbeats = prometheus.NewDesc("flotilla_heartbeats_received_total",
		"Heartbeats accepted from agents.", nil, nil)
	descRebalanced = prometheus.NewDesc("flotilla_agent_streams_rebalanced_total",
		"Agents' streams this control plane closed because it held more than its share of the fleet (replicas only); each agent reconnects to another replica.", nil, nil)
	descLeader = prometheus.NewDesc("flotilla_controlplane_fleet_leader",
		"1 while this control plane exports the fleet-level series (it leads the fleet among replicas; always with one process), 0 otherwise.", nil, nil)
)

// agentStates are the liveness states flotilla_agents and
// flotilla_agent_state export a series of, each from the first scrape on.
var agentStates = []string{store.AgentConnected, store.AgentDisconnected, store.AgentLost}

// agentDesc describes a per-agent series: labelled agent, env and role,
// then extra.
func agentDesc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append(slices.Clip(agentLabels), extra...), nil)
}

// Collector exports the registry to Prometheus. Fleet-level series (agents
// by state, the per-agent series) come only from the replica that leads
// the fleet (always from one process), so that sum() over replicas counts
// each agent once; heartbeats received and the leader gauge are this
// process's own. It reads the registry at scrape time, so heartbeats never touch a metric: the cost of metrics is
// per scrape, not per heartbeat. It copies what it exports under the
// registry's read lock and builds the metrics after releasing it, so a
// scrape of a large fleet does not hold heartbeats up.
type Collector struct {
	r        *Registry
	perAgent bool
}

// CollectorOption configures a Collector.
type CollectorOption func(*Collector)

// WithoutPerAgentSeries exports the fleet's totals only (flotilla_agents,
// flotilla_heartbeats_received_total), not the ten or so series of each
// agent nor the series of each of its containers: a fleet of thousands of hosts would otherwise put tens of
// thousands of series in every scrape.
func WithoutPerAgentSeries() CollectorOption { return func(c *Collector) { c.perAgent = false } }

// NewCollector returns a Collector for r.
func NewCollector(r *Registry, opts ...CollectorOption) *Collector {
	c := &Collector{r: r, perAgent: true}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAgents, descInfo, descState, descUp, descHeartbeatAge, descCPU, descMemory,
		descDisk, descLoad1, descAppHealthy, descHealthLatency, descDBConnections, descHeartbeats, descRebalanced, descLeader,
		descWALArchivedAt, descWALArchived, descWALFailed, descWALMissing, descContainerCPU, descContainerWorkingSet, descContainerUsage,
		descContainerLimit, descContainerRestarts, descContainerOOMKills, descContainerOOMKilled} {
		ch <- d
	}
}

// agentSample is what one scrape exports of one agent. Heartbeats are
// immutable once received (a new one replaces the pointer), so holding
// one after the lock is released is safe.
type agentSample struct {
	id, env, role, hostname, version, state string
	heartbeatAt                             time.Time
	heartbeat                               *flotillav1.Heartbeat
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	leading := c.r.Leading()
	counts, samples, heartbeats, now := c.snapshot(leading)
	for _, a := range samples {
		c.collectAgent(ch, now, a)
	}
	for state, n := range counts {
		gauge(ch, descAgents, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(descHeartbeats, prometheus.CounterValue, float64(heartbeats))
	if c.r.replicaMode() {
		ch <- prometheus.MustNewConstMetric(descRebalanced, prometheus.CounterValue, float64(c.r.rebalanced.n.Load()))
	}
	lead := 0.0
	if leading {
		lead = 1
	}
	gauge(ch, descLeader, lead)
}

// snapshot copies what a scrape exports: the heartbeat count always, the
// fleet-level figures only when leading (nil otherwise).
func (c *Collector) snapshot(leading bool) (map[string]int, []agentSample, uint64, time.Time) {
	r := c.r
	now := r.cfg.Now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !leading {
		return nil, nil, r.heartbeats, now
	}
	counts := make(map[string]int, len(agentStates))
	for _, state := range agentStates {
		counts[state] = 0
	}
	var samples []agentSample
	if c.perAgent {
		samples = make([]agentSample, 0, len(r.ids))
	}
	for _, id := range r.ids {
		e := r.agents[id]
		counts[e.rec.State]++
		if c.perAgent {
			samples = append(samples, agentSample{
				id: id, env: e.rec.Labels["env"], role: e.rec.Labels["role"], hostname: e.rec.Hostname,
				version: e.rec.Version, state: e.rec.State, heartbeatAt: r.currentAt(e), heartbeat: e.lastHeartbeat,
			})
		}
	}
	return counts, samples, r.heartbeats, now
}

func (c *Collector) collectAgent(ch chan<- prometheus.Metric, now time.Time, a agentSample) {
	lv := []string{a.id, a.env, a.role}
	gauge(ch, descInfo, 1, a.id, a.env, a.role, a.hostname, a.version)
	for _, state := range agentStates {
		current := 0.0
		if state == a.state {
			current = 1
		}
		gauge(ch, descState, current, a.id, a.env, a.role, state)
	}
	up := 0.0
	if a.state == store.AgentConnected {
		up = 1
	}
	gauge(ch, descUp, up, lv...)
	if !a.heartbeatAt.IsZero() {
		gauge(ch, descHeartbeatAge, now.Sub(a.heartbeatAt).Seconds(), lv...)
	}
	// Resource readings are exported only while the agent is connected:
	// a lost host's last CPU figure would otherwise look current forever.
	if a.state != store.AgentConnected || a.heartbeat == nil {
		return
	}
	hb := a.heartbeat
	if h := hb.GetHost(); h != nil {
		gauge(ch, descCPU, h.GetCpuPercent(), lv...)
		gauge(ch, descMemory, h.GetMemoryPercent(), lv...)
		gauge(ch, descLoad1, h.GetLoad1(), lv...)
		for _, d := range h.GetDisks() {
			gauge(ch, descDisk, d.GetUsedPercent(), a.id, a.env, a.role, d.GetPath())
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
		gauge(ch, descDBConnections, float64(db.GetConnections()), a.id, a.env, a.role, db.GetName())
		if w := db.GetWalArchiver(); w != nil {
			walMetrics(ch, w, a.id, a.env, a.role, db.GetName())
		}
	}
	for _, c := range hb.GetContainers() {
		if res := c.GetResources(); res != nil {
			containerMetrics(ch, c.GetState() == "running", res, a.id, a.env, a.role, c.GetName())
		}
	}
}

// containerMetrics exports a managed container's resources: the CPU and
// memory readings while it runs (a stopped container has none), the limit
// when it has one, the restart and OOM figures always.
func containerMetrics(ch chan<- prometheus.Metric, running bool, res *flotillav1.ContainerResources, labels ...string) {
	if running {
		gauge(ch, descContainerCPU, res.GetCpuPercent(), labels...)
		gauge(ch, descContainerWorkingSet, float64(res.GetMemoryWorkingSetBytes()), labels...)
		gauge(ch, descContainerUsage, float64(res.GetMemoryUsageBytes()), labels...)
	}
	if limit := res.GetMemoryLimitBytes(); limit > 0 {
		gauge(ch, descContainerLimit, float64(limit), labels...)
	}
	ch <- prometheus.MustNewConstMetric(descContainerRestarts, prometheus.CounterValue, float64(res.GetRestartCount()), labels...)
	ch <- prometheus.MustNewConstMetric(descContainerOOMKills, prometheus.CounterValue, float64(res.GetOomKills()), labels...)
	killed := 0.0
	if res.GetOomKilled() {
		killed = 1
	}
	gauge(ch, descContainerOOMKilled, killed, labels...)
}

// walMetrics exports a database's WAL archiving: the time of the last
// archived segment only once there is one, the counters always, and the
// segments missing from the archive per timeline it has.
func walMetrics(ch chan<- prometheus.Metric, w *flotillav1.WalArchiverStats, labels ...string) {
	if at := w.GetLastArchivedAt(); at != nil {
		gauge(ch, descWALArchivedAt, float64(at.AsTime().Unix()), labels...)
	}
	ch <- prometheus.MustNewConstMetric(descWALArchived, prometheus.CounterValue, float64(w.GetArchivedCount()), labels...)
	ch <- prometheus.MustNewConstMetric(descWALFailed, prometheus.CounterValue, float64(w.GetFailedCount()), labels...)
	for _, tl := range w.GetArchiveTimelines() {
		gauge(ch, descWALMissing, float64(tl.GetMissingSegments()), append(slices.Clip(labels), strconv.FormatUint(uint64(tl.GetTimeline()), 10))...)
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}
