package watch

import (
	"context"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/exitcode"
)

// fakeFleet answers WatchCommand with scripted streams in turn, and
// GetCommand with get.
type fakeFleet struct {
	flotillav1.FleetServiceClient
	streams [][]any // each: messages, then an error or nil for EOF
	get     *flotillav1.FleetCommand
	watches int
}

func (f *fakeFleet) WatchCommand(context.Context, *flotillav1.WatchCommandRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[flotillav1.WatchCommandResponse], error) {
	s := f.streams[min(f.watches, len(f.streams)-1)]
	f.watches++
	return &fakeCommandStream{items: s}, nil
}

func (f *fakeFleet) GetCommand(context.Context, *flotillav1.GetCommandRequest, ...grpc.CallOption) (*flotillav1.GetCommandResponse, error) {
	return &flotillav1.GetCommandResponse{Command: f.get}, nil
}

type fakeCommandStream struct {
	grpc.ClientStream
	items []any
}

func (s *fakeCommandStream) Recv() (*flotillav1.WatchCommandResponse, error) {
	if len(s.items) == 0 {
		return nil, io.EOF
	}
	it := s.items[0]
	s.items = s.items[1:]
	if err, ok := it.(error); ok {
		return nil, err
	}
	return it.(*flotillav1.WatchCommandResponse), nil
}

func snapshot(state flotillav1.FleetCommandState) *flotillav1.WatchCommandResponse {
	return &flotillav1.WatchCommandResponse{Body: &flotillav1.WatchCommandResponse_Snapshot{Snapshot: &flotillav1.FleetCommand{Id: "cmd-1", State: state}}}
}

// TestCommandFollowerReattaches: a cut stream and one that ends without a
// final snapshot (the command still running) are opened again; the end is
// the final snapshot.
func TestCommandFollowerReattaches(t *testing.T) {
	running := snapshot(flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING)
	f := &fakeFleet{
		streams: [][]any{
			{running, status.Error(codes.Unavailable, "connection reset")},
			{running}, // EOF while running
			{running, snapshot(flotillav1.FleetCommandState_FLEET_COMMAND_STATE_FAILED)},
		},
		get: running.GetSnapshot(),
	}
	seen, reattached := 0, 0
	final, err := (&CommandFollower{API: f, ID: "cmd-1", Backoff: fastBackoff,
		OnMessage:  func(*flotillav1.WatchCommandResponse) { seen++ },
		OnReattach: func(int, error) { reattached++ }}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if exitcode.ForCommand(final.GetState()) != exitcode.Failed || reattached != 2 || seen != 4 {
		t.Errorf("final %v after %d re-attaches and %d messages; want FAILED, 2, 4", final.GetState(), reattached, seen)
	}
}

// TestCommandFollowerEndedStream: a stream that ends with the command
// over (its final snapshot lost) is answered by GetCommand.
func TestCommandFollowerEndedStream(t *testing.T) {
	f := &fakeFleet{streams: [][]any{{snapshot(flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING)}},
		get: &flotillav1.FleetCommand{Id: "cmd-1", State: flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED}}
	final, err := (&CommandFollower{API: f, ID: "cmd-1", Backoff: fastBackoff}).Run(context.Background())
	if err != nil || final.GetState() != flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED || f.watches != 1 {
		t.Errorf("Run = %v, %v after %d watches", final, err, f.watches)
	}
}
