package server

import (
	"context"

	"flotilla.dev/pkg/run"

	"flotilla.dev/controlplane/internal/backups"
)

// backupWork is the backup policies' part of the server: the policy
// manager the API uses, the scheduler that runs the policies, the recorder
// that catalogues every backup and the gauges loaded from the catalog.
type backupWork struct {
	policies  *backups.Manager
	scheduler *backups.Scheduler
	recorder  *backups.Recorder
	metrics   *backups.Metrics
}

// buildBackups builds the backup work on the commands; call after the
// dispatcher and manager exist and before anything is delivered, so that
// the recorder hears every backup.
func (s *Server) buildBackups() error {
	b := &s.backups
	b.policies = backups.NewManager(s.store, s.opts.now)
	b.metrics = backups.NewMetrics(s.metrics, s.commandMetrics)
	b.recorder = backups.NewRecorder(s.store, s.log.Named("backups"))
	s.dispatcher.Listen(b.recorder.Listen)
	var err error
	// Replicas: with several control planes on PostgreSQL, only the one
	// holding the store lease runs (see Run); the store's run rows refuse
	// a second run of a job whichever control plane starts it. Once the
	// work-lease claimer (package work) is merged, the scheduler's Run
	// belongs under a "backups" lease.
	b.scheduler, err = backups.NewScheduler(backups.SchedulerConfig{
		Store: s.store, Commands: s.commands, Logger: s.log.Named("backups"), Now: s.opts.now,
		Interval: s.opts.intervals.BackupTick, Metrics: b.metrics,
	})
	return err
}

// loadBackups seeds the backup gauges from the catalog, so that they (and
// the alerts on them) survive a restart.
func (s *Server) loadBackups(ctx context.Context) error {
	return s.backups.metrics.Load(ctx, s.store)
}

// backupTasks are the backup loops Run starts.
func (s *Server) backupTasks() []run.Task {
	return []run.Task{
		{Name: "backup-scheduler", Run: s.backups.scheduler.Run},
		{Name: "backup-catalog", Run: s.backups.recorder.Run},
	}
}

// BackupScheduler exposes the scheduler (tests tick it).
func (s *Server) BackupScheduler() *backups.Scheduler { return s.backups.scheduler }
