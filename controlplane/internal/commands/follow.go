package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
	pkgrun "flotilla.dev/pkg/run"
)

// Defaults of FollowerConfig.
const (
	// DefaultCatchUp is how often a Follower catches up without a
	// wake-up: the longest a lost notification delays a command.
	DefaultCatchUp = time.Second
	// DefaultReportRetention is how long the reports and the events of a
	// finished command are kept.
	DefaultReportRetention = time.Hour
	// followPage is how many rows one catch-up read takes.
	followPage = 1000
	// pruneEvery is how often a Follower prunes old reports.
	pruneEvery = 10 * time.Minute
)

// FollowerConfig configures a Follower.
type FollowerConfig struct {
	Store      store.CommandStore
	Dispatcher *Dispatcher
	// Manager, when set, gets the changes for its watchers on commands
	// driven elsewhere and the operators' requests stored for the
	// commands it drives.
	Manager *Manager
	// Feed wakes the Follower when other replicas wrote; nil: it catches
	// up every CatchUp only.
	Feed   store.Feed
	Logger *zap.Logger
	// CatchUp: see DefaultCatchUp.
	CatchUp time.Duration
	// ReportRetention: see DefaultReportRetention.
	ReportRetention time.Duration
	Now             func() time.Time
}

// Follower is a replica's side of the commands other replicas write
// (replica mode, see replica.go): it reads the host command changes after
// the last seq it saw and hands them to the dispatcher's Relay and the
// Manager's watchers, and the reports after the last seq it saw to the
// dispatcher (and the Manager), on every wake-up of the feed and every
// CatchUp, so that a lost notification only delays.
type Follower struct {
	cfg       FollowerConfig
	log       *zap.Logger
	changeSeq int64 // only Init, then Run's changes loop, touch these
	reportSeq int64
	pruned    time.Time
	// initialized is set by Init, before Run.
	initialized bool
}

// NewFollower returns a Follower; Run it for as long as the replica serves.
func NewFollower(cfg FollowerConfig) (*Follower, error) {
	if cfg.Store == nil || cfg.Dispatcher == nil {
		return nil, errors.New("commands: follower needs Store and Dispatcher")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.CatchUp <= 0 {
		cfg.CatchUp = DefaultCatchUp
	}
	if cfg.ReportRetention <= 0 {
		cfg.ReportRetention = DefaultReportRetention
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Follower{cfg: cfg, log: cfg.Logger}, nil
}

// Init makes the Follower start with the changes made from now on: call
// it before the replica accepts agents' streams (an agent attaching later
// gets the commands stored before from the store, see OnConnect).
func (f *Follower) Init(ctx context.Context) error {
	seq, err := f.cfg.Store.LastHostCommandChange(ctx)
	if err != nil {
		return fmt.Errorf("commands: follower: %w", err)
	}
	f.changeSeq, f.initialized = seq, true
	return nil
}

// Run follows the changes and the reports until ctx ends, from where Init
// started (Run calls it if it was not) and with every report kept.
func (f *Follower) Run(ctx context.Context) error {
	for !f.initialized {
		err := f.Init(ctx)
		if err == nil {
			break
		}
		f.log.Warn("reading the last command change failed; retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(f.cfg.CatchUp):
		}
	}
	return pkgrun.All(ctx,
		pkgrun.Task{Name: "command changes", Run: func(ctx context.Context) error {
			f.follow(ctx, store.TopicCommands, f.catchUpChanges)
			return nil
		}},
		pkgrun.Task{Name: "command reports", Run: func(ctx context.Context) error {
			f.follow(ctx, store.TopicReports, f.catchUpReports)
			return nil
		}},
	)
}

// follow calls catchUp at once, then on every wake-up of topic and every
// CatchUp, until ctx ends.
func (f *Follower) follow(ctx context.Context, topic string, catchUp func(context.Context) error) {
	var wake <-chan struct{}
	if f.cfg.Feed != nil {
		w, stop := f.cfg.Feed.Subscribe(topic)
		defer stop()
		wake = w
	}
	tick := time.NewTicker(f.cfg.CatchUp)
	defer tick.Stop()
	failing := false
	for {
		err := catchUp(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			// Once per outage, not at every retry.
			f.log.Warn("catching up with other control planes failed; retrying", zap.String("topic", topic), zap.Error(err))
			failing = true
		case err == nil && failing:
			f.log.Info("caught up with other control planes again", zap.String("topic", topic))
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

// catchUpChanges hands the host command changes after the last seen to
// the dispatcher and the Manager.
func (f *Follower) catchUpChanges(ctx context.Context) error {
	for {
		hcs, err := f.cfg.Store.ListHostCommandChanges(ctx, f.changeSeq, followPage)
		if err != nil || len(hcs) == 0 {
			return err
		}
		f.cfg.Dispatcher.Relay(hcs)
		f.changeSeq = hcs[len(hcs)-1].ChangeSeq
		if len(hcs) < followPage {
			return nil
		}
	}
}

// catchUpReports applies the reports after the last seen (all of them
// again after the dispatcher adopted commands), and prunes old ones now
// and then.
func (f *Follower) catchUpReports(ctx context.Context) error {
	if f.cfg.Dispatcher.rescan() {
		f.reportSeq = 0
	}
	if now := f.cfg.Now(); now.Sub(f.pruned) >= pruneEvery {
		f.prune(ctx, now.Add(-f.cfg.ReportRetention))
	}
	for {
		reports, err := f.cfg.Store.ListCommandReports(ctx, f.reportSeq, followPage)
		if err != nil || len(reports) == 0 {
			return err
		}
		if err := f.cfg.Dispatcher.ApplyReports(ctx, reports); err != nil {
			return err // read again from the same seq: applying twice is harmless
		}
		if f.cfg.Manager != nil {
			f.cfg.Manager.applyRequests(ctx, reports)
		}
		f.reportSeq = reports[len(reports)-1].Seq
		if len(reports) < followPage {
			return nil
		}
	}
}

// prune deletes the reports and the events of the commands finished before
// before; what fails is pruned at the next try.
func (f *Follower) prune(ctx context.Context, before time.Time) {
	reports, err := f.cfg.Store.PruneCommandReports(ctx, before)
	if err != nil {
		f.log.Warn("pruning command reports failed; will retry", zap.Error(err))
		return
	}
	events, err := f.cfg.Store.PruneCommandEvents(ctx, before)
	if err != nil {
		f.log.Warn("pruning command events failed; will retry", zap.Error(err))
		return
	}
	f.pruned = f.cfg.Now()
	f.log.Debug("pruned command reports and events", zap.Int64("reports", reports), zap.Int64("events", events))
}
