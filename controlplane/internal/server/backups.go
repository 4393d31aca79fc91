package server

import (
	"context"

	"flotilla.dev/pkg/run"

	"flotilla.dev/controlplane/internal/backups"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/work"
)

// backupWork is the backup policies' part of the server: the policy
// manager the API uses, the scheduler that runs the policies, the recorder
// that catalogues every backup and the gauges loaded from the catalog.
type backupWork struct {
	policies  *backups.Manager
	scheduler *backups.Scheduler
	recorder  *backups.Recorder
	metrics   *backups.Metrics
	// claimer holds the scheduler's work lease (replica mode only).
	claimer *work.Claimer
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
	b.scheduler, err = backups.NewScheduler(backups.SchedulerConfig{
		Store: s.store, Commands: s.commands, Logger: s.log.Named("backups"), Now: s.opts.now,
		Interval: s.opts.intervals.BackupTick, Metrics: b.metrics, OnStale: s.notifier.OnBackupStale,
	})
	if err != nil || s.holder == "" {
		return err
	}
	// Replicas: one of them ticks the scheduler, the holder of the
	// "backups/scheduler" work lease; another takes over within the
	// lease's TTL when it stops. The lease only saves work: the run rows'
	// compare-and-set already keeps two schedulers from starting a run
	// twice, a run's command ID comes from its slot, and recording a run's
	// results is idempotent, so a deposed holder's last tick is harmless.
	b.claimer, err = work.New(work.Config{
		Store: s.store, Kind: backupsLeaseKind, Holder: s.holder, TTL: s.cfg.Store.LeaseTTL.Std(),
		Candidates: func(context.Context) ([]string, error) { return []string{backupsLeaseID}, nil },
		Start: func(ctx context.Context, _ string, _ store.Lease) {
			_ = b.scheduler.Run(ctx) // returns when the lease is lost or the server stops
		},
		Logger: s.log.Named("backups"), Metrics: s.workMetrics(),
	})
	return err
}

// The work lease of the backup scheduler: "backups/scheduler".
const (
	backupsLeaseKind = "backups"
	backupsLeaseID   = "scheduler"
)

// loadBackups seeds the backup gauges from the catalog, so that they (and
// the alerts on them) survive a restart.
func (s *Server) loadBackups(ctx context.Context) error {
	return s.backups.metrics.Load(ctx, s.store)
}

// backupTasks are the backup loops Run starts.
func (s *Server) backupTasks() []run.Task {
	scheduler := s.backups.scheduler.Run
	if s.backups.claimer != nil {
		scheduler = s.backups.claimer.Run
	}
	return []run.Task{
		{Name: "backup-scheduler", Run: scheduler},
		{Name: "backup-catalog", Run: s.backups.recorder.Run},
	}
}

// BackupScheduler exposes the scheduler (tests tick it).
func (s *Server) BackupScheduler() *backups.Scheduler { return s.backups.scheduler }
