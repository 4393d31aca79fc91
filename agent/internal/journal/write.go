package journal

import (
	"errors"
	"fmt"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/logging"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// RestartMessage is the outcome Recover gives to commands a previous agent
// process left in flight. They are never run again: the agent cannot know
// how far they got.
const RestartMessage = "agent restarted while the command was running; it was not run again (outcome unknown: check the host)"

// Begin journals cmd with its first event, unless the journal already holds
// cmd's ID. It is the at-most-once gate: check and insert happen in one
// transaction, fsynced before Begin returns, so of any number of Begin calls
// for an ID (concurrent, or across restarts) exactly one returns created.
// The entry returned is the new one, or the one already journaled.
//
// first must be for cmd and be ACCEPTED or final (a command refused before
// it starts is journaled too, so that a duplicate gets the same answer).
func (j *Journal) Begin(cmd *flotillav1.Command, first *flotillav1.CommandEvent) (entry *Entry, created bool, err error) {
	id := cmd.GetId()
	switch {
	case id == "":
		return nil, false, errors.New("journal: a command without an ID cannot be journaled")
	case first.GetCommandId() != id:
		return nil, false, fmt.Errorf("journal: the first event is for command %q, not %q", first.GetCommandId(), id)
	case first.GetState() != flotillav1.CommandState_COMMAND_STATE_ACCEPTED && !command.Terminal(first.GetState()):
		return nil, false, fmt.Errorf("journal: command %s cannot begin in state %s", id, first.GetState())
	}
	now := j.opts.Clock.Now()
	err = j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCommands)
		if data := b.Get([]byte(id)); data != nil {
			entry, err = decode([]byte(id), data)
			return err
		}
		entry = &Entry{
			Command:    proto.Clone(cmd).(*flotillav1.Command),
			ReceivedAt: now,
			State:      first.GetState(),
			LastEvent:  proto.Clone(first).(*flotillav1.CommandEvent),
			UpdatedAt:  now,
		}
		created = true
		return put(b, id, entry)
	})
	if err != nil {
		return nil, false, fmt.Errorf("journal: begin %s: %w", id, err)
	}
	if created {
		j.afterInsert(now)
	}
	return entry, created, nil
}

// Update journals ev as the latest event of its command. States only move
// forward (ACCEPTED, RUNNING, final); progress within RUNNING replaces the
// previous event. A final state is never overwritten: Update then returns
// the journaled entry with ErrFinished.
func (j *Journal) Update(id string, ev *flotillav1.CommandEvent) (*Entry, error) {
	if ev.GetCommandId() != id {
		return nil, fmt.Errorf("journal: update %s: the event is for command %q", id, ev.GetCommandId())
	}
	var entry *Entry
	err := j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCommands)
		data := b.Get([]byte(id))
		if data == nil {
			return ErrNotFound
		}
		var err error
		if entry, err = decode([]byte(id), data); err != nil {
			return err
		}
		if entry.Terminal() {
			return ErrFinished
		}
		if command.Rank(ev.GetState()) < command.Rank(entry.State) || command.Rank(ev.GetState()) == 0 {
			return fmt.Errorf("state %s cannot follow %s", ev.GetState(), entry.State)
		}
		entry.State = ev.GetState()
		entry.LastEvent = proto.Clone(ev).(*flotillav1.CommandEvent)
		entry.UpdatedAt = j.opts.Clock.Now()
		return put(b, id, entry)
	})
	if errors.Is(err, ErrFinished) {
		return entry, fmt.Errorf("journal: update %s to %s: %w (it is %s)", id, ev.GetState(), ErrFinished, entry.State)
	}
	if err != nil {
		return nil, fmt.Errorf("journal: update %s: %w", id, err)
	}
	return entry, nil
}

// Recover fails the commands a previous process left ACCEPTED or RUNNING:
// the agent died while they ran. They are never run again; their event says
// so (RestartMessage), and the journal report carries it to the control
// plane. Call it once at start, before any command is handled; it returns
// the entries it failed.
func (j *Journal) Recover(now time.Time) ([]*Entry, error) {
	var failed []*Entry
	err := j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCommands)
		inFlight, err := j.unfinished(b)
		if err != nil {
			return err
		}
		for _, entry := range inFlight {
			id := entry.Command.GetId()
			entry.State = flotillav1.CommandState_COMMAND_STATE_FAILED
			entry.LastEvent = &flotillav1.CommandEvent{
				CommandId: id,
				State:     flotillav1.CommandState_COMMAND_STATE_FAILED,
				Message:   RestartMessage,
				At:        timestamppb.New(now),
			}
			entry.UpdatedAt = now
			if err := put(b, id, entry); err != nil {
				return err
			}
		}
		failed = inFlight
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("journal: recover: %w", err)
	}
	for _, e := range failed {
		j.log.Warn("command was in flight when the agent stopped; marked failed, not run again",
			logging.CommandID(e.Command.GetId()), zap.Time("received_at", e.ReceivedAt))
	}
	return failed, nil
}

// unfinished decodes the entries that are not final. The bucket must not be
// written during ForEach, hence the two passes.
func (j *Journal) unfinished(b *bolt.Bucket) ([]*Entry, error) {
	var entries []*Entry
	err := b.ForEach(func(k, v []byte) error {
		entry, err := decode(k, v)
		if err != nil {
			j.skipCorrupt(err)
			return nil
		}
		if !entry.Terminal() {
			entries = append(entries, entry)
		}
		return nil
	})
	return entries, err
}

func put(b *bolt.Bucket, id string, e *Entry) error {
	data, err := encode(e)
	if err != nil {
		return err
	}
	return b.Put([]byte(id), data)
}
