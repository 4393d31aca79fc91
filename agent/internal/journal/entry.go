package journal

import (
	"encoding/json"
	"fmt"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"google.golang.org/protobuf/proto"
)

// Entry is what the journal holds about one command.
type Entry struct {
	// Command is the command as it was received.
	Command *flotillav1.Command
	// ReceivedAt is when the agent journaled it.
	ReceivedAt time.Time
	// State is the state of LastEvent.
	State flotillav1.CommandState
	// LastEvent is the command's latest event, with its result once terminal.
	LastEvent *flotillav1.CommandEvent
	// UpdatedAt is when LastEvent was journaled.
	UpdatedAt time.Time
}

// Terminal reports whether the entry's state is terminal: its result is
// final and nothing follows it.
func (e *Entry) Terminal() bool { return command.Terminal(e.State) }

// record is an Entry as stored: a JSON envelope (readable with bbolt's
// tools, extensible) around the protobuf wire format of the messages.
type record struct {
	Command    []byte    `json:"command"`
	ReceivedAt time.Time `json:"received_at"`
	State      string    `json:"state"`
	LastEvent  []byte    `json:"last_event"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func encode(e *Entry) ([]byte, error) {
	cmd, err := proto.Marshal(e.Command)
	if err != nil {
		return nil, fmt.Errorf("journal: encoding command %s: %w", e.Command.GetId(), err)
	}
	ev, err := proto.Marshal(e.LastEvent)
	if err != nil {
		return nil, fmt.Errorf("journal: encoding the event of command %s: %w", e.Command.GetId(), err)
	}
	return json.Marshal(record{
		Command:    cmd,
		ReceivedAt: e.ReceivedAt.UTC(),
		State:      e.State.String(),
		LastEvent:  ev,
		UpdatedAt:  e.UpdatedAt.UTC(),
	})
}

// decodeHeader decodes the envelope only: enough to age and rank an entry
// without unmarshalling its messages.
func decodeHeader(id, data []byte) (record, flotillav1.CommandState, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return r, 0, fmt.Errorf("journal: entry %q is corrupt: %w", id, err)
	}
	state, ok := flotillav1.CommandState_value[r.State]
	if !ok {
		return r, 0, fmt.Errorf("journal: entry %q has an unknown state %q", id, r.State)
	}
	return r, flotillav1.CommandState(state), nil
}

func decode(id, data []byte) (*Entry, error) {
	r, state, err := decodeHeader(id, data)
	if err != nil {
		return nil, err
	}
	e := &Entry{
		Command:    &flotillav1.Command{},
		ReceivedAt: r.ReceivedAt,
		State:      state,
		LastEvent:  &flotillav1.CommandEvent{},
		UpdatedAt:  r.UpdatedAt,
	}
	if err := proto.Unmarshal(r.Command, e.Command); err != nil {
		return nil, fmt.Errorf("journal: entry %q: corrupt command: %w", id, err)
	}
	if err := proto.Unmarshal(r.LastEvent, e.LastEvent); err != nil {
		return nil, fmt.Errorf("journal: entry %q: corrupt event: %w", id, err)
	}
	return e, nil
}
