package watch

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/exitcode"
)

// attachment is what one WatchRollout call of fakeRollouts delivers:
// events up to upTo (from the first, as the server replays them), then end
// (nil: the stream's normal end).
type attachment struct {
	upTo int
	end  error
}

// fakeRollouts answers WatchRollout with the scripted attachments in turn
// and GetRollout with the rollout as the events left it.
type fakeRollouts struct {
	flotillav1.RolloutServiceClient
	events  []*flotillav1.RolloutEvent
	final   *flotillav1.Rollout
	running *flotillav1.Rollout
	script  []attachment

	mu      sync.Mutex
	watches int
	served  int // events of the longest attachment so far
}

func (f *fakeRollouts) WatchRollout(ctx context.Context, _ *flotillav1.WatchRolloutRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[flotillav1.WatchRolloutResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.script[min(f.watches, len(f.script)-1)]
	f.watches++
	if a.upTo == 0 && a.end != nil {
		return nil, a.end
	}
	f.served = max(f.served, a.upTo)
	return &fakeStream{events: f.events[:a.upTo], end: a.end}, nil
}

func (f *fakeRollouts) GetRollout(context.Context, *flotillav1.GetRolloutRequest, ...grpc.CallOption) (*flotillav1.GetRolloutResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.served == len(f.events) {
		return &flotillav1.GetRolloutResponse{Rollout: f.final}, nil
	}
	return &flotillav1.GetRolloutResponse{Rollout: f.running}, nil
}

type fakeStream struct {
	grpc.ClientStream
	events []*flotillav1.RolloutEvent
	end    error
}

func (s *fakeStream) Recv() (*flotillav1.WatchRolloutResponse, error) {
	if len(s.events) == 0 {
		if s.end == nil {
			return nil, io.EOF
		}
		return nil, s.end
	}
	ev := s.events[0]
	s.events = s.events[1:]
	return &flotillav1.WatchRolloutResponse{Event: ev}, nil
}

func stateEvent(seq int64, state flotillav1.RolloutState, msg string) *flotillav1.RolloutEvent {
	return &flotillav1.RolloutEvent{Sequence: seq, At: timestamppb.New(t0.Add(time.Duration(seq) * time.Second)),
		Kind: &flotillav1.RolloutEvent_State{State: &flotillav1.RolloutStateChange{State: state, Message: msg}}}
}

func hostEvent(seq int64, agent string, step flotillav1.HostStep, msg string) *flotillav1.RolloutEvent {
	return &flotillav1.RolloutEvent{Sequence: seq, At: timestamppb.New(t0.Add(time.Duration(seq) * time.Second)),
		Kind: &flotillav1.RolloutEvent_Host{Host: &flotillav1.HostStepChange{AgentId: agent, Step: step, Message: msg}}}
}

var fastBackoff = Backoff{Initial: time.Millisecond, Max: time.Millisecond}

// TestRolloutFollowerReattaches: a stream cut with Unavailable, then one
// that ends before the rollout did, are opened again; every event is
// passed on once, in order, and the end is the server's final state.
func TestRolloutFollowerReattaches(t *testing.T) {
	events := recordedStream()
	f := &fakeRollouts{events: events,
		running: &flotillav1.Rollout{Id: "ro-1", State: flotillav1.RolloutState_ROLLOUT_STATE_RUNNING},
		final: &flotillav1.Rollout{Id: "ro-1", State: flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED,
			FinishedAt: timestamppb.New(t0)},
		script: []attachment{
			{upTo: 3, end: status.Error(codes.Unavailable, "connection reset")},
			{upTo: 0, end: status.Error(codes.Unavailable, "connection refused")},
			{upTo: 5}, // ended early (a replica stopping)
			{upTo: len(events)},
		}}
	var got []int64
	reattached := 0
	follower := &RolloutFollower{API: f, ID: "ro-1", Backoff: fastBackoff,
		OnEvent:    func(ev *flotillav1.RolloutEvent) { got = append(got, ev.GetSequence()) },
		OnReattach: func(int, error) { reattached++ }}
	r, err := follower.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED || exitcode.ForRollout(r.GetState()) != exitcode.OK {
		t.Errorf("final state %v", r.GetState())
	}
	if len(got) != len(events) {
		t.Fatalf("events passed on: %v; want 1..%d once each", got, len(events))
	}
	for i, seq := range got {
		if seq != int64(i+1) {
			t.Fatalf("events passed on: %v; want 1..%d once each", got, len(events))
		}
	}
	if reattached != 3 || f.watches != 4 {
		t.Errorf("re-attached %d times over %d watches; want 3 over 4", reattached, f.watches)
	}
}

// TestRolloutFollowerFinalErrors: an error that would repeat ends the
// follow at once, without a re-attach.
func TestRolloutFollowerFinalErrors(t *testing.T) {
	for _, c := range []codes.Code{codes.NotFound, codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument} {
		f := &fakeRollouts{script: []attachment{{end: status.Error(c, "no")}}}
		follower := &RolloutFollower{API: f, ID: "ro-1", Backoff: fastBackoff,
			OnReattach: func(int, error) { t.Errorf("%v: re-attached", c) }}
		if _, err := follower.Run(context.Background()); status.Code(err) != c {
			t.Errorf("Run = %v; want %v", err, c)
		}
	}
}

// TestRolloutFollowerUnknownFinalState: a newer server's final state (one
// this version does not know) ends the follow by finished_at and is never
// success.
func TestRolloutFollowerUnknownFinalState(t *testing.T) {
	events := []*flotillav1.RolloutEvent{stateEvent(1, flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, ""),
		stateEvent(2, flotillav1.RolloutState(42), "analysis failed")}
	f := &fakeRollouts{events: events, script: []attachment{{upTo: 2}},
		final: &flotillav1.Rollout{Id: "ro-1", State: flotillav1.RolloutState(42), FinishedAt: timestamppb.New(t0)}}
	r, err := (&RolloutFollower{API: f, ID: "ro-1", Backoff: fastBackoff}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if code := exitcode.ForRollout(r.GetState()); code != exitcode.Failed {
		t.Errorf("code %d, want %d", code, exitcode.Failed)
	}
}

// TestRolloutFollowerContext: the caller's end stops the re-attaching.
func TestRolloutFollowerContext(t *testing.T) {
	f := &fakeRollouts{script: []attachment{{end: status.Error(codes.Unavailable, "down")}}}
	ctx, cancel := context.WithCancel(context.Background())
	follower := &RolloutFollower{API: f, ID: "ro-1", Backoff: fastBackoff,
		OnReattach: func(n int, _ error) {
			if n == 3 {
				cancel()
			}
		}}
	if _, err := follower.Run(ctx); err != context.Canceled {
		t.Errorf("Run = %v; want context.Canceled", err)
	}
}

func TestRetryable(t *testing.T) {
	for err, want := range map[error]bool{
		io.EOF:                              true,
		status.Error(codes.Unavailable, ""): true,
		status.Error(codes.Internal, "RST_STREAM"): true,
		status.Error(codes.ResourceExhausted, ""):  true,
		status.Error(codes.NotFound, ""):           false,
		status.Error(codes.Unauthenticated, ""):    false,
		status.Error(codes.PermissionDenied, ""):   false,
		status.Error(codes.InvalidArgument, ""):    false,
	} {
		if got := Retryable(err); got != want {
			t.Errorf("Retryable(%v) = %t", err, got)
		}
	}
}
