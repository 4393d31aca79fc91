package backups

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
)

// DefaultStaleGrace is how long after a backup slot its run may take
// before the policy's backups count as stale (the same hour the
// FlotillaBackupPolicyOverdue alert allows).
const DefaultStaleGrace = time.Hour

// Stale says that a policy's newest successful backup is older than its
// schedule allows: the slot after it passed more than the grace ago
// without a run that succeeded on every host.
type Stale struct {
	Policy, Database, Selector string
	// LastSuccess is when the last run that succeeded on every host
	// finished; the policy's creation before one did (FirstEver then).
	LastSuccess time.Time
	FirstEver   bool
	// Due is the slot after LastSuccess, Deadline that slot plus the grace.
	Due, Deadline time.Time
	// At is when the scheduler found it.
	At time.Time
	// The last finished run, if any: its command, whether it succeeded and
	// its outcome ("1 of 3 hosts failed; db-2: …"); and the run in
	// progress, if any.
	LastCommandID, LastMessage, Running string
}

// staleEpisodes remembers, per policy, the last success whose staleness
// was reported: once per episode, which a new success ends.
type staleEpisodes struct {
	mu       sync.Mutex
	reported map[string]time.Time
}

// first records last for policy and reports whether it is a new episode.
func (e *staleEpisodes) first(policy string, last time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t, ok := e.reported[policy]; ok && t.Equal(last) {
		return false
	}
	if e.reported == nil {
		e.reported = make(map[string]time.Time)
	}
	e.reported[policy] = last
	return true
}

// forget drops the policies not in keep (deleted ones).
func (e *staleEpisodes) forget(keep map[string]bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name := range e.reported {
		if !keep[name] {
			delete(e.reported, name)
		}
	}
}

// checkStale tells OnStale, once per episode, that the backups of p are
// older than its schedule allows. A paused policy schedules nothing on
// purpose and is not reported. The scheduler runs on one replica (the
// backups/scheduler lease holder); the event's ID comes from the policy
// and its last success, so a new holder that reports the same episode
// again is absorbed by the outbox.
func (s *Scheduler) checkStale(ctx context.Context, p *Policy, r store.BackupPolicyRun) {
	if s.cfg.OnStale == nil || p.Backup == nil || p.Def.GetPaused() {
		return
	}
	last, firstEver := r.LastSuccessAt, false
	if !last.After(p.CreatedAt) {
		last, firstEver = p.CreatedAt, true
	}
	due := p.Backup.Next(last)
	now := s.cfg.Now()
	if due.IsZero() || now.Before(due.Add(s.cfg.StaleGrace)) {
		return
	}
	name := p.Def.GetName()
	if !s.stale.first(name, last) {
		return
	}
	st := Stale{
		Policy: name, Database: p.Def.GetDatabase(), Selector: p.Def.GetSelector(),
		LastSuccess: last, FirstEver: firstEver, Due: due, Deadline: due.Add(s.cfg.StaleGrace), At: now,
		LastCommandID: r.LastCommandID, LastMessage: r.LastMessage, Running: r.CommandID,
	}
	s.log.Warn("backup policy's newest successful backup is older than its schedule allows",
		zap.String("policy", name), zap.Time("last_success", last), zap.Time("due", due),
		zap.String("last_command_id", r.LastCommandID), zap.String("last_outcome", r.LastMessage))
	s.cfg.OnStale(ctx, st)
}
