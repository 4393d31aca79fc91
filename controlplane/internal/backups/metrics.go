package backups

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/metrics"
	"flotilla.dev/controlplane/internal/schedule"
	"flotilla.dev/controlplane/internal/store"
)

// Metrics are the backup policy and drill gauges. A nil *Metrics records
// nothing.
type Metrics struct {
	// commands holds the last-backup gauges, which every backup command
	// sets; Load seeds them from the catalog.
	commands *commands.Metrics

	policySuccess  *prometheus.GaugeVec
	policyInterval *prometheus.GaugeVec
	drillSuccess   *prometheus.GaugeVec
	drillOK        *prometheus.GaugeVec
	drillRestore   *prometheus.GaugeVec

	mu       sync.Mutex
	policies map[string]bool // the policies with series
}

// NewMetrics creates the gauges and registers them with reg; cm holds the
// last-backup gauges that Load seeds.
func NewMetrics(reg prometheus.Registerer, cm *commands.Metrics) *Metrics {
	m := &Metrics{
		commands: cm,
		policySuccess: metrics.GaugeVec("flotilla_backup_policy_last_success_timestamp_seconds",
			"When the last run of a policy's task (backup, drill) that succeeded on every host finished, or the policy's creation before any did (Unix time).",
			"policy", "task"),
		policyInterval: metrics.GaugeVec("flotilla_backup_policy_interval_seconds",
			"The usual interval between two slots of a policy's task schedule.", "policy", "task"),
		drillSuccess: metrics.GaugeVec("flotilla_backup_last_drill_success_timestamp_seconds",
			"When the last successful restore drill of a database finished (Unix time).", "agent", "database"),
		drillOK: metrics.GaugeVec("flotilla_backup_last_drill_succeeded",
			"Whether the latest restore drill of a database succeeded (1) or failed (0).", "agent", "database"),
		drillRestore: metrics.GaugeVec("flotilla_backup_last_drill_restore_seconds",
			"The restore time (RTO) the latest successful drill of a database measured.", "agent", "database"),
		policies: map[string]bool{},
	}
	reg.MustRegister(m.policySuccess, m.policyInterval, m.drillSuccess, m.drillOK, m.drillRestore)
	return m
}

// Load seeds the gauges from the catalog: the last backup and drill of
// every database, as a control plane that never stopped would show them.
func (m *Metrics) Load(ctx context.Context, st store.BackupStore) error {
	if m == nil {
		return nil
	}
	latest, err := st.LatestBackups(ctx)
	if err != nil {
		return err
	}
	for _, b := range latest.Verified {
		m.commands.ObserveBackup(b.AgentID, b.Database, b.FinishedAt, uint64(b.SizeBytes))
	}
	m.drills(latest)
	return nil
}

// drills sets the drill gauges from the catalog's latest drills. The
// scheduler calls it on every tick too, so drills recorded by another
// control plane (or after a restore of the store) show.
func (m *Metrics) drills(latest store.LatestBackups) {
	for _, b := range latest.Drilled {
		m.drill(b)
	}
	for _, b := range latest.DrillSucceeded {
		m.drillSuccess.WithLabelValues(b.AgentID, b.Database).Set(float64(b.DrillAt.Unix()))
	}
}

// refreshDrills reads the latest drills from the catalog into the gauges.
func (m *Metrics) refreshDrills(ctx context.Context, st store.BackupStore) error {
	if m == nil {
		return nil
	}
	latest, err := st.LatestBackups(ctx)
	if err != nil {
		return err
	}
	m.drills(latest)
	return nil
}

// Drill records a drill's outcome.
func (m *Metrics) Drill(b store.Backup) {
	if m == nil {
		return
	}
	m.drill(b)
	if b.DrillSucceeded {
		m.drillSuccess.WithLabelValues(b.AgentID, b.Database).Set(float64(b.DrillAt.Unix()))
	}
}

func (m *Metrics) drill(b store.Backup) {
	ok := 0.0
	if b.DrillSucceeded {
		ok = 1
		m.drillRestore.WithLabelValues(b.AgentID, b.Database).Set(b.DrillRestore.Seconds())
	}
	m.drillOK.WithLabelValues(b.AgentID, b.Database).Set(ok)
}

// policy sets the gauges of one policy's jobs from their run rows.
func (m *Metrics) policy(p *Policy, runs map[[2]string]store.BackupPolicyRun) {
	if m == nil {
		return
	}
	name := p.Def.GetName()
	m.mu.Lock()
	m.policies[name] = true
	m.mu.Unlock()
	for job, s := range map[string]*schedule.Schedule{store.BackupJobBackup: p.Backup, store.BackupJobDrill: p.Drill} {
		if s == nil {
			m.policySuccess.DeleteLabelValues(name, job)
			m.policyInterval.DeleteLabelValues(name, job)
			continue
		}
		last := p.CreatedAt
		if r := runs[[2]string{name, job}]; r.LastSuccessAt.After(last) {
			last = r.LastSuccessAt
		}
		m.policySuccess.WithLabelValues(name, job).Set(float64(last.Unix()))
		m.policyInterval.WithLabelValues(name, job).Set(period(s).Seconds())
	}
}

// forget drops the series of policies not in keep (deleted ones).
func (m *Metrics) forget(keep map[string]bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.policies {
		if !keep[name] {
			m.policySuccess.DeletePartialMatch(prometheus.Labels{"policy": name})
			m.policyInterval.DeletePartialMatch(prometheus.Labels{"policy": name})
			delete(m.policies, name)
		}
	}
}
