package grpcurl

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// RunCommand calls RunCommand with body and returns the fleet command it
// started.
func (c Client) RunCommand(t testing.TB, body string) FleetCommand {
	t.Helper()
	var resp CommandResponse
	c.RPC(t, FleetService+"RunCommand", body, &resp)
	if resp.Command.ID == "" {
		t.Fatalf("RunCommand answered no command ID: %+v", resp)
	}
	return resp.Command
}

// GetCommand calls GetCommand.
func (c Client) GetCommand(t testing.TB, id string) FleetCommand {
	t.Helper()
	var resp CommandResponse
	c.RPC(t, FleetService+"GetCommand", fmt.Sprintf(`{"command_id": %q}`, id), &resp)
	return resp.Command
}

// RunToEnd runs a command, follows it with WatchCommand until the server
// ends the stream with the command (bounded by timeout), and returns the
// final snapshot, every message the stream printed, and the time from
// calling RunCommand to the stream's end.
func (c Client) RunToEnd(t testing.TB, body string, timeout time.Duration) (FleetCommand, []CommandWatch, time.Duration) {
	t.Helper()
	began := time.Now()
	fc := c.RunCommand(t, body)
	msgs := Messages[CommandWatch](c.WatchCommand(t, fc.ID, timeout).Wait(t))
	took := time.Since(began)
	final := FinalSnapshot(t, msgs)
	if final.ID != fc.ID {
		t.Fatalf("WatchCommand %s ended with a snapshot of command %s", fc.ID, final.ID)
	}
	h := final.Host()
	result, _ := json.Marshal(h.Result)
	t.Logf("  → %d messages in %s; final snapshot: %s, host %s, message %q, result %s",
		len(msgs), took.Round(time.Millisecond), final.State, h.State, h.Message, result)
	return final, msgs, took
}

// FinalSnapshot is the last message of a finished watch, a snapshot of
// the ended command.
func FinalSnapshot(t testing.TB, msgs []CommandWatch) FleetCommand {
	t.Helper()
	if len(msgs) == 0 || msgs[len(msgs)-1].Snapshot == nil {
		t.Fatalf("WatchCommand did not end with a snapshot: %s", Dump(msgs))
	}
	fc := *msgs[len(msgs)-1].Snapshot
	if fc.State == "FLEET_COMMAND_STATE_RUNNING" || fc.State == "" {
		t.Fatalf("WatchCommand ended while the command is %q: %s", fc.State, Dump(msgs))
	}
	return fc
}

// HostEvents are the host events of a watch, in order.
func HostEvents(msgs []CommandWatch) []CommandEvent {
	var out []CommandEvent
	for _, m := range msgs {
		if m.Event != nil {
			out = append(out, m.Event.Event)
		}
	}
	return out
}

// FirstEvent returns the first event in state, if any.
func FirstEvent(events []CommandEvent, state string) (CommandEvent, bool) {
	for _, e := range events {
		if e.State == state {
			return e, true
		}
	}
	return CommandEvent{}, false
}
