package journal

import (
	"fmt"
	"sort"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Get returns the journaled entry of a command, or ErrNotFound.
func (j *Journal) Get(id string) (*Entry, error) {
	var entry *Entry
	err := j.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketCommands).Get([]byte(id))
		if data == nil {
			return ErrNotFound
		}
		var err error
		entry, err = decode([]byte(id), data)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("journal: get %s: %w", id, err)
	}
	return entry, nil
}

// Entries returns the last event of every journaled command, oldest command
// first: the content of a JournalReport.
func (j *Journal) Entries() ([]*flotillav1.CommandEvent, error) {
	var entries []*Entry
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCommands).ForEach(func(k, v []byte) error {
			entry, err := decode(k, v)
			if err != nil {
				j.skipCorrupt(err)
				return nil
			}
			entries = append(entries, entry)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("journal: listing entries: %w", err)
	}
	sort.SliceStable(entries, func(a, b int) bool { return entries[a].ReceivedAt.Before(entries[b].ReceivedAt) })
	events := make([]*flotillav1.CommandEvent, len(entries))
	for i, e := range entries {
		events[i] = e.LastEvent
	}
	return events, nil
}

// skipCorrupt logs an entry that cannot be decoded. Listing and recovery go
// on without it rather than keep the agent from starting; Begin still
// refuses its ID (the key exists), so it is never run again.
func (j *Journal) skipCorrupt(err error) {
	j.log.Error("skipping a corrupt journal entry", zap.Error(err))
}
