package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/exitcode"
)

// CommandFollower follows one fleet command to its end.
type CommandFollower struct {
	// API is the fleet service.
	API flotillav1.FleetServiceClient
	// ID is the fleet command's ID.
	ID string
	// OnMessage is called with every message of the watch stream: a
	// snapshot (the first of every stream, and the last) or a host event.
	// After a re-attach the new stream's first snapshot says where the
	// command stands; host events of the gap are not repeated.
	OnMessage func(*flotillav1.WatchCommandResponse)
	// OnReattach is told that the stream dropped and is opened again.
	OnReattach func(attempt int, err error)
	// Backoff paces the re-attach attempts; zero: DefaultBackoff.
	Backoff Backoff

	attempts int
}

// Run follows the command until a snapshot in a final state, and returns
// that snapshot (with every host).
func (f *CommandFollower) Run(ctx context.Context) (*flotillav1.FleetCommand, error) {
	if f.Backoff.Initial == 0 {
		f.Backoff = DefaultBackoff()
	}
	for {
		final, err := f.attach(ctx)
		if final != nil {
			return final, nil
		}
		if err == nil {
			// The stream ended without a final snapshot: ask.
			var resp *flotillav1.GetCommandResponse
			resp, err = f.API.GetCommand(ctx, &flotillav1.GetCommandRequest{CommandId: f.ID})
			if err == nil && exitcode.CommandFinal(resp.GetCommand().GetState()) {
				return resp.GetCommand(), nil
			}
		}
		if err := retryAfter(ctx, err, &f.Backoff, &f.attempts, f.OnReattach); err != nil {
			return nil, err
		}
	}
}

// attach reads one watch stream; it returns the final snapshot when the
// stream delivered one.
func (f *CommandFollower) attach(ctx context.Context) (*flotillav1.FleetCommand, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := f.API.WatchCommand(ctx, &flotillav1.WatchCommandRequest{CommandId: f.ID})
	if err != nil {
		return nil, err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		f.Backoff.Reset()
		if f.OnMessage != nil {
			f.OnMessage(msg)
		}
		if s := msg.GetSnapshot(); s != nil && exitcode.CommandFinal(s.GetState()) {
			return s, nil
		}
	}
}

// CommandLine is one message of a command's watch stream as a plain line.
func CommandLine(m *flotillav1.WatchCommandResponse) string {
	if s := m.GetSnapshot(); s != nil {
		line := fmt.Sprintf("command %s %s", s.GetId(), strings.TrimPrefix(s.GetState().String(), "FLEET_COMMAND_STATE_"))
		if sum := summaryLine(s.GetSummary()); sum != "" {
			line += ": " + sum
		}
		return line
	}
	e := m.GetEvent()
	ev := e.GetEvent()
	line := fmt.Sprintf("%s host %s %s", ev.GetAt().AsTime().Local().Format(time.TimeOnly), e.GetAgentId(),
		strings.TrimPrefix(ev.GetState().String(), "COMMAND_STATE_"))
	if p := ev.GetProgress(); p != nil && p.GetTotal() > 0 {
		line += fmt.Sprintf(" %d%%", p.GetCurrent()*100/p.GetTotal())
	}
	return withMessage(line, ev.GetMessage())
}

func summaryLine(m map[string]int32) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
