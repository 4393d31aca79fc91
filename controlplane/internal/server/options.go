package server

import (
	"context"
	"time"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/notify"
	"flotilla.dev/controlplane/internal/store"
)

// Option adjusts how New builds a server.
type Option func(*options)

// StoreOpener opens the store a server runs on. The server closes it in Close.
type StoreOpener func(ctx context.Context, cfg config.Config) (store.Store, error)

// Intervals are the periods of the background loops. A zero field keeps the
// subsystem's default; tests shorten them so that nothing waits for seconds.
type Intervals struct {
	// RolloutTick is how often a rollout waiting on a health gate is looked
	// at again (rollout.Config.TickInterval).
	RolloutTick time.Duration
	// RolloutRetry is the wait after a store failure (rollout.Config.RetryInterval).
	RolloutRetry time.Duration
	// CommandSweep is how often command deadlines are checked
	// (commands.DispatcherConfig.SweepInterval).
	CommandSweep time.Duration
	// StatusFlush is how often agent status changes are written
	// (fleet.Config.FlushInterval).
	StatusFlush time.Duration
	// FleetRefresh is how often a replica reads the rest of the fleet from
	// the store (fleet.Replica.RefreshInterval; PostgreSQL only).
	FleetRefresh time.Duration
	// BackupTick is how often the backup scheduler looks for due jobs and
	// finished runs (backups.SchedulerConfig.Interval).
	BackupTick time.Duration
	// RemediationTick is how often the remediation driver reads the
	// fleet's container readings (remediation.Config.Interval).
	RemediationTick time.Duration
}

type options struct {
	openStore StoreOpener
	wrapStore func(store.Store) store.Store
	now       func() time.Time
	intervals Intervals
	notify    func(*notify.Config)
}

func newOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithStoreOpener makes New open its store with open instead of the store
// the configuration names (store.driver).
func WithStoreOpener(open StoreOpener) Option {
	return func(o *options) { o.openStore = open }
}

// WithStoreWrapper makes the server use wrap(store) instead of the store it
// opened; tests use it to make the store fail.
func WithStoreWrapper(wrap func(store.Store) store.Store) Option {
	return func(o *options) { o.wrapStore = wrap }
}

// WithClock makes the server's subsystems (fleet, commands, rollouts,
// authentication, API) read the time from now instead of time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithIntervals sets the periods of the background loops.
func WithIntervals(iv Intervals) Option {
	return func(o *options) { o.intervals = iv }
}
