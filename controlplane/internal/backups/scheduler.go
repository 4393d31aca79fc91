package backups

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/logging"
	"flotilla.dev/pkg/run"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
)

// DefaultInterval is how often the scheduler looks for due jobs and
// finished runs.
const DefaultInterval = 15 * time.Second

// Commands is what the scheduler asks of the fleet commands
// (commands.Manager).
type Commands interface {
	// StartWithID starts a fleet command under a chosen ID; an ID already
	// stored wraps store.ErrConflict.
	StartWithID(ctx context.Context, id string, req *flotillav1.RunCommandRequest, createdBy string) (*flotillav1.FleetCommand, error)
	// Get returns a fleet command, with its hosts in the full view.
	Get(ctx context.Context, id string, view flotillav1.CommandView) (*flotillav1.FleetCommand, error)
}

// Job is one kind of scheduled work of a policy.
type Job struct {
	// Name is store.BackupJobBackup, BackupJobDrill or BackupJobPrune.
	Name string
	// Schedule picks the policy's schedule for the job; nil means the job
	// is off for that policy (unless After is set).
	Schedule func(*Policy) Schedule
	// After names a job whose every success is followed by a run of this
	// one (the prune after the backup), for the instant that run
	// succeeded; the job has no schedule of its own then.
	After string
	// Spec is the command the job runs on every selected host.
	Spec func(*Policy) (*flotillav1.CommandSpec, error)
	// Finished records what a finished run produced (catalog entries,
	// drill results); it runs before the run is marked finished, so a
	// failure is retried on the next tick.
	Finished func(ctx context.Context, p *Policy, fc *flotillav1.FleetCommand) error
}

// Schedule is the part of schedule.Schedule the scheduler uses.
type Schedule interface {
	Next(t time.Time) time.Time
	Latest(after, upTo time.Time) time.Time
}

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	Store    store.BackupStore
	Commands Commands
	// Jobs are the jobs run for each policy; DefaultJobs when nil.
	Jobs     []Job
	Logger   *zap.Logger
	Now      func() time.Time
	Interval time.Duration
	Metrics  *Metrics
	// OnStale is told, once per episode, of a policy whose newest
	// successful backup is older than its schedule allows (the slot after
	// it plus StaleGrace passed); it may wait for a store write. Nil: not
	// watched.
	OnStale func(context.Context, Stale)
	// StaleGrace is DefaultStaleGrace when zero.
	StaleGrace time.Duration
}

// Scheduler runs the backup policies' jobs as fleet commands.
type Scheduler struct {
	cfg   SchedulerConfig
	log   *zap.Logger
	stale staleEpisodes
}

// NewScheduler returns a Scheduler; Run drives it.
func NewScheduler(cfg SchedulerConfig) (*Scheduler, error) {
	if cfg.Store == nil || cfg.Commands == nil {
		return nil, errors.New("backups: the scheduler needs Store and Commands")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.StaleGrace <= 0 {
		cfg.StaleGrace = DefaultStaleGrace
	}
	return &Scheduler{cfg: cfg, log: cfg.Logger}, nil
}

// Run ticks every interval until ctx ends. A tick that fails is logged and
// the next one tries again: the run rows in the store say where each job
// stands, so nothing is lost or done twice.
func (s *Scheduler) Run(ctx context.Context) error {
	return run.Every(ctx, s.cfg.Interval, func(ctx context.Context) {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("backup scheduler tick failed; retrying on the next", zap.Error(err))
		}
	})
}

// Tick follows the runs in progress and starts the jobs that are due.
func (s *Scheduler) Tick(ctx context.Context) error {
	policies, err := s.cfg.Store.ListBackupPolicies(ctx)
	if err != nil {
		return err
	}
	runs, err := s.cfg.Store.ListBackupPolicyRuns(ctx, "")
	if err != nil {
		return err
	}
	byKey := make(map[[2]string]store.BackupPolicyRun, len(runs))
	for _, r := range runs {
		byKey[[2]string{r.Policy, r.Job}] = r
	}
	var errs []error
	seen := make(map[string]bool, len(policies))
	for _, sp := range policies {
		p, err := Decode(sp)
		if err != nil {
			s.log.Error("backup policy unreadable; not scheduled", zap.String("policy", sp.Name), zap.Error(err))
			continue
		}
		for _, job := range s.jobs() {
			r := byKey[[2]string{p.Def.GetName(), job.Name}]
			r.Policy, r.Job = p.Def.GetName(), job.Name
			due := s.due(p, job, r, byKey)
			if due == nil {
				continue
			}
			if err := s.step(ctx, p, job, due, r); err != nil {
				errs = append(errs, fmt.Errorf("policy %s, %s: %w", r.Policy, job.Name, err))
			}
		}
		s.cfg.Metrics.policy(p, byKey)
		s.checkStale(ctx, p, byKey[[2]string{p.Def.GetName(), store.BackupJobBackup}])
		seen[sp.Name] = true
	}
	s.cfg.Metrics.forget(seen)
	s.stale.forget(seen)
	if err := s.cfg.Metrics.refreshDrills(ctx, s.cfg.Store); err != nil {
		errs = append(errs, fmt.Errorf("reading the latest drills: %w", err))
	}
	return errors.Join(errs...)
}

func (s *Scheduler) jobs() []Job {
	if s.cfg.Jobs == nil {
		return DefaultJobs(s.cfg.Store, s.cfg.Metrics, s.log)
	}
	return s.cfg.Jobs
}

// due returns the function that gives the slot a job of a policy owes at
// now (zero when none), or nil when the job is off for the policy.
func (s *Scheduler) due(p *Policy, job Job, r store.BackupPolicyRun, runs map[[2]string]store.BackupPolicyRun) func(now time.Time) time.Time {
	after := p.since(r.LastSlot)
	if job.After != "" {
		prev := runs[[2]string{r.Policy, job.After}]
		return func(time.Time) time.Time {
			if prev.LastSuccessAt.After(after) {
				return prev.LastSuccessAt
			}
			return time.Time{}
		}
	}
	sched := job.Schedule(p)
	if sched == nil {
		return nil
	}
	return func(now time.Time) time.Time {
		slot := sched.Latest(after, now)
		if missed := sched.Next(after); !slot.IsZero() && missed.Before(slot) {
			s.log.Info("backup policy slots missed while the scheduler was away; running once, for the latest",
				zap.String("policy", r.Policy), zap.String("job", job.Name), zap.Time("first_missed", missed), zap.Time("slot", slot))
		}
		return slot
	}
}

// step moves one job of one policy: follows its run in progress, or starts
// the run that is due.
func (s *Scheduler) step(ctx context.Context, p *Policy, job Job, due func(time.Time) time.Time, r store.BackupPolicyRun) error {
	if r.CommandID != "" {
		return s.follow(ctx, p, job, r)
	}
	if p.Def.GetPaused() {
		return nil
	}
	slot := due(s.cfg.Now())
	if slot.IsZero() {
		return nil
	}
	id := RunID(p, job.Name, slot)
	start := store.BackupPolicyRun{Policy: r.Policy, Job: job.Name, LastSlot: slot, CommandID: id, StartedAt: s.cfg.Now()}
	// The run row first: a crash before the command exists leaves a run
	// whose command follow creates, under the same ID.
	if err := s.cfg.Store.StartBackupPolicyRun(ctx, start); err != nil {
		if errors.Is(err, store.ErrRunInProgress) {
			return nil // another control plane started it
		}
		return err
	}
	return s.create(ctx, p, job, start)
}

// create starts the run's fleet command; one that cannot start ends the
// run as failed with the reason.
func (s *Scheduler) create(ctx context.Context, p *Policy, job Job, r store.BackupPolicyRun) error {
	spec, err := job.Spec(p)
	if err == nil {
		req := &flotillav1.RunCommandRequest{
			Spec: spec, Selector: p.Def.GetSelector(), View: flotillav1.CommandView_COMMAND_VIEW_SUMMARY,
			Reason: fmt.Sprintf("backup policy %s: %s for %s", r.Policy, job.Name, r.LastSlot.UTC().Format(time.RFC3339)),
		}
		_, err = s.cfg.Commands.StartWithID(ctx, r.CommandID, req, "scheduler:backup-policy/"+r.Policy)
		if err == nil || errors.Is(err, store.ErrConflict) {
			s.log.Info("backup policy run started", zap.String("policy", r.Policy), zap.String("job", job.Name),
				logging.CommandID(r.CommandID), zap.Time("slot", r.LastSlot))
			return nil
		}
	}
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, fault.ErrUnavailable) || ctx.Err() != nil {
		return err // the next tick creates it
	}
	s.log.Warn("backup policy run could not start", zap.String("policy", r.Policy), zap.String("job", job.Name),
		logging.CommandID(r.CommandID), zap.Error(err))
	return s.finish(ctx, r, false, "could not start: "+err.Error())
}

// follow checks the run in progress and, once its command ended, records
// what it produced and ends the run.
func (s *Scheduler) follow(ctx context.Context, p *Policy, job Job, r store.BackupPolicyRun) error {
	fc, err := s.cfg.Commands.Get(ctx, r.CommandID, flotillav1.CommandView_COMMAND_VIEW_FULL)
	if errors.Is(err, fault.ErrNotFound) {
		// Recorded, never created: the control plane stopped in between.
		return s.create(ctx, p, job, r)
	}
	if err != nil {
		return err
	}
	if fc.GetState() == flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING {
		return nil
	}
	if job.Finished != nil {
		if err := job.Finished(ctx, p, fc); err != nil {
			return fmt.Errorf("recording the results of %s: %w", r.CommandID, err)
		}
	}
	ok := fc.GetState() == flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED
	s.log.Info("backup policy run finished", zap.String("policy", r.Policy), zap.String("job", job.Name),
		logging.CommandID(r.CommandID), zap.Bool("succeeded", ok))
	return s.finish(ctx, r, ok, outcome(fc))
}

func (s *Scheduler) finish(ctx context.Context, r store.BackupPolicyRun, ok bool, msg string) error {
	err := s.cfg.Store.FinishBackupPolicyRun(ctx, store.BackupPolicyRun{
		Policy: r.Policy, Job: r.Job, LastCommandID: r.CommandID, LastFinishedAt: s.cfg.Now(), LastSucceeded: ok, LastMessage: msg,
	})
	if errors.Is(err, store.ErrRunInProgress) {
		return nil // another control plane finished it
	}
	return err
}

// outcome says why a run failed ("" when every host succeeded): the host
// counts and the first failure's message.
func outcome(fc *flotillav1.FleetCommand) string {
	var failed []string
	first := ""
	for _, h := range fc.GetHosts() {
		if h.GetState() != flotillav1.CommandState_COMMAND_STATE_SUCCEEDED {
			failed = append(failed, h.GetAgentId())
			if first == "" {
				first = h.GetAgentId() + ": " + h.GetMessage()
			}
		}
	}
	if len(failed) == 0 && fc.GetState() == flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED {
		return ""
	}
	if len(failed) == 0 {
		return "command " + strings.ToLower(strings.TrimPrefix(fc.GetState().String(), "FLEET_COMMAND_STATE_"))
	}
	return fmt.Sprintf("%d of %d hosts failed; %s", len(failed), len(fc.GetHosts()), first)
}

// RunID is the fleet command ID of a job's run for a slot: the same for
// the same policy (as created), job and slot, so a run recorded before a
// crash is created once afterwards: cmd- and 12 base32 characters (60
// bits of a SHA-256), where package ids makes 8 random ones.
func RunID(p *Policy, job string, slot time.Time) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%s\x00%d", p.Def.GetName(), p.CreatedAt.UnixNano(), job, slot.UnixNano())))
	enc := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
	return "cmd-" + enc[:12]
}
