package commands

import (
	"testing"
	"unicode/utf8"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"google.golang.org/protobuf/proto"
)

// FuzzHandle feeds the runner whatever a control plane could send: the
// bytes of a Command message, decoded as the stream decodes it (missing
// fields, unknown kinds and fields, huge strings, deadlines long past or
// far away or invalid). Every kind has a fake executor. The command is
// delivered twice and cancelled, as a reconnecting control plane might.
//
// Properties: nothing panics; the command runs at most once; every event
// is for the command's ID and can be sent (valid, bounded); a command
// without a usable ID gets no event at all.
//
// The seed corpus is in testdata/fuzz/FuzzHandle; run it longer with
// go test -run '^$' -fuzz '^FuzzHandle$' -fuzztime 1m ./internal/commands
func FuzzHandle(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd := &flotillav1.Command{}
		if err := proto.Unmarshal(data, cmd); err != nil {
			return // the stream fails on such a message: the runner never sees it
		}
		exec := newFake()
		h := newHarness(t, func(c *Config) {
			c.Executors = map[string]executor.Executor{}
			for _, kind := range command.Kinds() {
				c.Executors[kind] = exec
			}
		})
		h.runner.Handle(cmd)
		h.runner.Handle(proto.Clone(cmd).(*flotillav1.Command))
		h.runner.Cancel(cmd.GetId(), "fuzz")
		h.stop() // waits for the execution, if any

		if n := exec.executions.Load(); n > 1 {
			t.Fatalf("command %q executed %d times", cmd.GetId(), n)
		}
		id := cmd.GetId()
		usableID := id != "" && len(id) <= MaxCommandIDBytes
		for _, ev := range drain(h.events) {
			if !usableID {
				t.Fatalf("a command with an unusable ID (%d bytes) got an event", len(id))
			}
			checkEvent(t, id, ev)
		}
	})
}

// drain returns the events sent so far.
func drain(events chan *flotillav1.CommandEvent) []*flotillav1.CommandEvent {
	var out []*flotillav1.CommandEvent
	for {
		select {
		case ev := <-events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// checkEvent checks that ev is for id and that the control plane can take it.
func checkEvent(t *testing.T, id string, ev *flotillav1.CommandEvent) {
	t.Helper()
	if ev.GetCommandId() != id {
		t.Fatalf("event for %q, want %q", ev.GetCommandId(), id)
	}
	if msg := ev.GetMessage(); len(msg) > MaxEventMessageBytes || !utf8.ValidString(msg) {
		t.Fatalf("event message of %d bytes, valid UTF-8: %v", len(msg), utf8.ValidString(msg))
	}
	if _, err := proto.Marshal(ev); err != nil {
		t.Fatalf("the event cannot be sent: %v", err)
	}
}
