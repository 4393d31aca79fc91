package conn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"flotilla.dev/agent/internal/endpoint"
	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/agent/internal/fakecp"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	accepted  = flotillav1.CommandState_COMMAND_STATE_ACCEPTED
	running   = flotillav1.CommandState_COMMAND_STATE_RUNNING
	succeeded = flotillav1.CommandState_COMMAND_STATE_SUCCEEDED
)

// fakeExecutor stands in for the real executors, which are tested in their
// own packages: these tests are about delivery over the stream.
type fakeExecutor struct {
	release    chan struct{} // nil: succeed at once; else wait for it
	executions atomic.Int32
	started    chan struct{}
}

var pullResult = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Pull{Pull: &flotillav1.PullResult{Image: "app:2", ImageId: "sha256:abc"}}}

func (f *fakeExecutor) Validate(*flotillav1.CommandSpec) error { return nil }

func (f *fakeExecutor) Execute(ctx context.Context, _ *flotillav1.CommandSpec, _ executor.Progress) (*flotillav1.CommandResult, error) {
	f.executions.Add(1)
	f.started <- struct{}{}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return pullResult, nil
}

func pullCommand(id string) *flotillav1.Command {
	return &flotillav1.Command{
		Id:   id,
		Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: "app:2"}}},
	}
}

func command(cmd *flotillav1.Command) *flotillav1.ConnectResponse {
	return &flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Command{Command: cmd}}
}

// event reads the stream until a command event, skipping heartbeats.
func (h *harness) event(t *testing.T, st *fakecp.Stream) *flotillav1.CommandEvent {
	t.Helper()
	for {
		msg := h.next(t, st)
		if ev := msg.GetCommandEvent(); ev != nil {
			return ev
		}
		if msg.GetHeartbeat() == nil {
			t.Fatalf("got %v, want a command event", msg)
		}
	}
}

// attempt waits for the runner's next send attempt.
func (h *harness) attempt(t *testing.T) sendAttempt {
	t.Helper()
	select {
	case a := <-h.attempts:
		return a
	case <-h.ctx.Done():
		t.Fatal("the runner sent nothing")
		return sendAttempt{}
	}
}

func reportEntry(report *flotillav1.JournalReport, id string) *flotillav1.CommandEvent {
	for _, ev := range report.GetEntries() {
		if ev.GetCommandId() == id {
			return ev
		}
	}
	return nil
}

func TestJournalReportAfterEveryWelcome(t *testing.T) {
	h := start(t, nil)
	st, report := h.streamWithReport(t)
	if len(report.GetEntries()) != 0 {
		t.Fatalf("first report of a fresh agent has %d entries", len(report.GetEntries()))
	}
	if err := st.Send(h.ctx, command(pullCommand("c1"))); err != nil {
		t.Fatal(err)
	}
	for h.event(t, st).GetState() != succeeded {
	}

	for range 2 {
		st.Drop(status.Error(codes.Unavailable, "control plane restarting"))
		h.waitLog(t, "disconnected")
		h.advance(t, 1, time.Second) // the backoff timer
		st, report = h.streamWithReport(t)
		if ev := reportEntry(report, "c1"); ev.GetState() != succeeded || !proto.Equal(ev.GetResult(), pullResult) {
			t.Fatalf("report after reconnecting has %v for c1, want its success", ev)
		}
		h.heartbeat(t, st) // the report comes before the first heartbeat
	}
}

func TestCommandDeliveredTwiceAcrossAReconnectRunsOnce(t *testing.T) {
	h := start(t, nil)
	h.exec.release = make(chan struct{})
	st := h.stream(t)
	h.heartbeat(t, st)

	cmd := pullCommand("c2")
	if err := st.Send(h.ctx, command(cmd)); err != nil {
		t.Fatal(err)
	}
	for h.event(t, st).GetState() != running {
	}
	<-h.exec.started

	// The stream breaks while the command runs; it finishes meanwhile, and
	// its final event cannot be sent.
	st.Drop(status.Error(codes.Unavailable, "network partition"))
	h.waitLog(t, "disconnected")
	close(h.exec.release)
	for {
		a := h.attempt(t)
		if a.ev.GetState() != succeeded {
			continue
		}
		if !errors.Is(a.err, ErrNotConnected) {
			t.Fatalf("sending without a stream: %v, want ErrNotConnected", a.err)
		}
		break
	}

	// After the reconnect the report carries the outcome, and the control
	// plane, which never heard it, delivers the command again.
	h.advance(t, 1, time.Second)
	st, report := h.streamWithReport(t)
	if ev := reportEntry(report, "c2"); ev.GetState() != succeeded || !proto.Equal(ev.GetResult(), pullResult) {
		t.Fatalf("report after reconnecting has %v for c2, want its success", ev)
	}
	if err := st.Send(h.ctx, command(cmd)); err != nil {
		t.Fatal(err)
	}
	if ev := h.event(t, st); ev.GetState() != succeeded || !proto.Equal(ev.GetResult(), pullResult) {
		t.Fatalf("the second delivery got %v, want the final event again", ev)
	}
	if n := h.exec.executions.Load(); n != 1 {
		t.Fatalf("executed %d times, want once", n)
	}
}

// unconnected returns a Client that never ran.
func unconnected(t *testing.T) *Client {
	t.Helper()
	c, err := New(Config{
		Endpoints: endpoint.Config{Addresses: []string{"cp:1"}}, TLS: fakecp.TLSFor(&tlsConfig), Hello: func() *flotillav1.Hello { return nil },
		Heartbeats: &countingSource{}, Commands: nopCommands{}, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSendEventWithoutStream(t *testing.T) {
	c := unconnected(t)
	if err := c.SendEvent(&flotillav1.CommandEvent{CommandId: "c"}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("SendEvent before any stream: %v, want ErrNotConnected", err)
	}
}

type nopCommands struct{}

func (nopCommands) Handle(*flotillav1.Command)        {}
func (nopCommands) Cancel(string, string)             {}
func (nopCommands) Report() *flotillav1.JournalReport { return &flotillav1.JournalReport{} }

func TestSplitReport(t *testing.T) {
	entry := func(i, size int) *flotillav1.CommandEvent {
		return &flotillav1.CommandEvent{CommandId: fmt.Sprint(i), Message: strings.Repeat("x", size)}
	}
	var entries []*flotillav1.CommandEvent
	for i := range 10 {
		entries = append(entries, entry(i, 100))
	}
	entries = append(entries, entry(10, 5000)) // larger than a part: goes alone
	entries = append(entries, entry(11, 100))

	parts := splitReport(&flotillav1.JournalReport{Entries: entries}, 1000)
	var got []*flotillav1.CommandEvent
	for i, p := range parts {
		if size := proto.Size(p); size > 1000 && len(p.GetEntries()) > 1 {
			t.Errorf("part %d is %d bytes with %d entries", i, size, len(p.GetEntries()))
		}
		got = append(got, p.GetEntries()...)
	}
	if len(got) != len(entries) {
		t.Fatalf("parts hold %d entries, want %d", len(got), len(entries))
	}
	for i := range entries {
		if got[i] != entries[i] {
			t.Fatalf("entry %d out of order", i)
		}
	}
	if len(parts) < 3 {
		t.Errorf("%d parts, want the report split", len(parts))
	}
	if empty := splitReport(&flotillav1.JournalReport{}, 1000); len(empty) != 1 || len(empty[0].GetEntries()) != 0 {
		t.Errorf("an empty journal gives %v, want one empty report", empty)
	}
}

// RefreshHeartbeat has the stream send a heartbeat taken after the call,
// without waiting for the interval, and returns once it is sent.
func TestRefreshHeartbeatSendsOneNow(t *testing.T) {
	h := start(t, nil)
	st := h.stream(t)
	if n := h.heartbeat(t, st).GetHost().GetUptimeSeconds(); n != 1 {
		t.Fatalf("first heartbeat #%d", n)
	}
	done := make(chan error, 1)
	go func() { done <- h.client.RefreshHeartbeat(h.ctx) }()
	if n := h.heartbeat(t, st).GetHost().GetUptimeSeconds(); n != 2 {
		t.Fatalf("heartbeat #%d after the refresh, want #2 (the clock did not move)", n)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RefreshHeartbeat: %v", err)
		}
	case <-h.ctx.Done():
		t.Fatal("RefreshHeartbeat did not return after its heartbeat was sent")
	}
	// The interval goes on as before.
	h.advance(t, 1, interval)
	if n := h.heartbeat(t, st).GetHost().GetUptimeSeconds(); n != 3 {
		t.Fatalf("heartbeat #%d after the interval, want #3", n)
	}
}

func TestRefreshHeartbeatWithoutStream(t *testing.T) {
	if err := unconnected(t).RefreshHeartbeat(context.Background()); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("RefreshHeartbeat before any stream: %v, want ErrNotConnected", err)
	}
}
