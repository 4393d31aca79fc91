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
	// Replicas: every replica runs the scheduler. That is correct as it
	// is: a run starts only through the compare-and-set on its run row
	// (one replica wins, the others find it in progress), its command ID
	// is derived from the slot (a replica that finds the run recorded but
	// its command missing creates the same command; the other's create
	// answers ErrConflict), and recording results and ending the run are
	// idempotent. It is wasteful (every replica ticks): once package work
	// (the lease claimer) is on main, Run belongs under a "backups" work
	// lease, with the lease's fencing token on the run rows' writes.
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
