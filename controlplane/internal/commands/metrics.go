package commands

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/metrics"
	"flotilla.dev/controlplane/internal/store"
)

// Metrics are the command metrics. A nil *Metrics records nothing.
type Metrics struct {
	total        *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inflight     *prometheus.GaugeVec
	backupTime   *prometheus.GaugeVec
	backupSize   *prometheus.GaugeVec
	fleetStarted prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		total: metrics.CounterVec("flotilla_commands_total",
			"Host commands finished, by kind and final state.", "kind", "state"),
		duration: metrics.HistogramVec("flotilla_command_duration_seconds",
			"Time from a host command's release to its final state, by kind.",
			[]float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}, "kind"),
		inflight: metrics.GaugeVec("flotilla_commands_in_flight",
			"Host commands not yet finished (queued, pending or running), by kind.", "kind"),
		backupTime: metrics.GaugeVec("flotilla_backup_last_success_timestamp_seconds",
			"When the last successful backup of a database finished (Unix time).", "agent", "database"),
		backupSize: metrics.GaugeVec("flotilla_backup_last_size_bytes",
			"Size of the last successful backup archive of a database.", "agent", "database"),
		fleetStarted: metrics.Counter("flotilla_fleet_commands_started_total",
			"Fleet commands started with RunCommand."),
	}
	// Every series an alert or panel takes increase() or rate() of exists at
	// 0 from start-up: a series born at 1 shows no increase, so the first
	// failure of a kind after a start would never fire an alert.
	for _, k := range command.Kinds() {
		m.inflight.WithLabelValues(k)
		m.duration.WithLabelValues(k)
		for _, s := range finalStates() {
			m.total.WithLabelValues(k, s)
		}
	}
	reg.MustRegister(m.total, m.duration, m.inflight, m.backupTime, m.backupSize, m.fleetStarted)
	return m
}

// finalStates are the names of the terminal command states, sorted:
// the states flotilla_commands_total counts.
func finalStates() []string {
	var names []string
	for v := range flotillav1.CommandState_name {
		if command.Terminal(flotillav1.CommandState(v)) {
			names = append(names, command.StateName(flotillav1.CommandState(v)))
		}
	}
	slices.Sort(names)
	return names
}

func (m *Metrics) inFlight(kind string, delta float64) {
	if m != nil {
		m.inflight.WithLabelValues(kind).Add(delta)
	}
}

func (m *Metrics) started() {
	if m != nil {
		m.fleetStarted.Inc()
	}
}

func (m *Metrics) finished(hc store.HostCommand) {
	if m == nil {
		return
	}
	st := flotillav1.CommandState(hc.State)
	m.inflight.WithLabelValues(hc.Kind).Dec()
	m.total.WithLabelValues(hc.Kind, command.StateName(st)).Inc()
	if !hc.ReleasedAt.IsZero() {
		m.duration.WithLabelValues(hc.Kind).Observe(hc.FinishedAt.Sub(hc.ReleasedAt).Seconds())
	}
	if hc.Kind == command.KindBackup && st == flotillav1.CommandState_COMMAND_STATE_SUCCEEDED {
		r := &flotillav1.CommandResult{}
		if proto.Unmarshal(hc.Result, r) == nil && r.GetBackup() != nil {
			m.ObserveBackup(hc.AgentID, r.GetBackup().GetDatabase(), hc.FinishedAt, r.GetBackup().GetSizeBytes())
		}
	}
}

// ObserveBackup sets the last-backup gauges of a database on an agent: on
// every successful backup command, and at start from the backup catalog,
// so that the gauges (and the stale-backup alert) survive a restart.
func (m *Metrics) ObserveBackup(agentID, database string, finished time.Time, sizeBytes uint64) {
	if m == nil {
		return
	}
	m.backupTime.WithLabelValues(agentID, database).Set(float64(finished.Unix()))
	m.backupSize.WithLabelValues(agentID, database).Set(float64(sizeBytes))
}
