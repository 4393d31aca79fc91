package journal

import (
	"fmt"
	"sort"
	"time"

	"flotilla.dev/pkg/command"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// prunable is what Prune needs to know of an entry.
type prunable struct {
	id        []byte
	updatedAt time.Time
}

// Prune deletes the finished entries whose last event is older than
// Retention, then, while more than MaxEntries remain, the finished entries
// with the oldest last event, down to 90% of MaxEntries (so that a full
// journal is not scanned again on the next Begin). Entries in flight are
// never pruned. It returns how many entries it deleted.
//
// Prune runs on Open and on Begin, at most once per PruneInterval unless the
// journal is over MaxEntries; calling it directly is for tests and tools.
func (j *Journal) Prune(now time.Time) (int, error) {
	var deleted, remaining int
	err := j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCommands)
		finished, total, err := j.finishedEntries(b)
		if err != nil {
			return err
		}
		doomed := j.selectPrunable(finished, total, now)
		for _, p := range doomed {
			if err := b.Delete(p.id); err != nil {
				return err
			}
		}
		deleted, remaining = len(doomed), total-len(doomed)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("journal: prune: %w", err)
	}
	j.mu.Lock()
	j.count, j.lastPrune = remaining, now
	j.mu.Unlock()
	if deleted > 0 {
		j.log.Info("journal pruned", zap.Int("deleted", deleted), zap.Int("remaining", remaining))
	}
	return deleted, nil
}

// finishedEntries lists the finished entries, oldest last event first, and
// counts all entries.
func (j *Journal) finishedEntries(b *bolt.Bucket) ([]prunable, int, error) {
	var (
		finished []prunable
		total    int
	)
	err := b.ForEach(func(k, v []byte) error {
		total++
		r, state, err := decodeHeader(k, v)
		if err != nil {
			j.skipCorrupt(err)
			return nil
		}
		if command.Terminal(state) {
			// k points into the memory map; copy it before the bucket changes.
			finished = append(finished, prunable{id: append([]byte(nil), k...), updatedAt: r.UpdatedAt})
		}
		return nil
	})
	sort.SliceStable(finished, func(a, b int) bool { return finished[a].updatedAt.Before(finished[b].updatedAt) })
	return finished, total, err
}

// selectPrunable picks the entries to delete among finished (sorted oldest
// first), out of total entries.
func (j *Journal) selectPrunable(finished []prunable, total int, now time.Time) []prunable {
	cutoff := now.Add(-j.opts.Retention)
	n := 0
	for n < len(finished) && finished[n].updatedAt.Before(cutoff) {
		n++
	}
	if total-n > j.opts.MaxEntries {
		target := j.opts.MaxEntries - j.opts.MaxEntries/10
		n = min(total-target, len(finished))
	}
	return finished[:n]
}

// afterInsert counts a new entry and prunes when the journal is over its cap
// or the last prune is older than PruneInterval. A failed prune is logged:
// the entry is journaled, and the next prune will try again.
func (j *Journal) afterInsert(now time.Time) {
	j.mu.Lock()
	j.count++
	due := j.count > j.opts.MaxEntries || now.Sub(j.lastPrune) >= j.opts.PruneInterval
	j.mu.Unlock()
	if !due {
		return
	}
	if _, err := j.Prune(now); err != nil {
		j.log.Warn("pruning the journal failed; it will be retried", zap.Error(err))
	}
}
