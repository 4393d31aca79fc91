package conn

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/commands"
	"flotilla.dev/agent/internal/endpoint"
	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/agent/internal/fakecp"
	"flotilla.dev/agent/internal/journal"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	cmdkind "flotilla.dev/pkg/command"
	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	agentID  = "web-1-1"
	interval = 5 * time.Second
)

// countingSource numbers its heartbeats in UptimeSeconds.
type countingSource struct {
	clock clockwork.Clock
	n     atomic.Uint64
}

func (s *countingSource) Heartbeat(context.Context) *flotillav1.Heartbeat {
	return &flotillav1.Heartbeat{
		ObservedAt: timestamppb.New(s.clock.Now()),
		Host:       &flotillav1.HostMetrics{UptimeSeconds: s.n.Add(1)},
	}
}

type harness struct {
	srv    *fakecp.Server
	clock  *clockwork.FakeClock
	logs   *observer.ObservedLogs
	events chan string     // every log message, in order
	ctx    context.Context // bounds every wait of the test
	cancel context.CancelFunc
	done   chan error // Run's result

	client   *Client
	exec     *fakeExecutor
	runner   *commands.Runner
	attempts chan sendAttempt // every event the runner tried to send
}

// sendAttempt is one call of the runner's Send.
type sendAttempt struct {
	ev  *flotillav1.CommandEvent
	err error
}

var startedAt = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

// start runs a Client against a fake control plane until the test ends.
func start(t *testing.T, srv *fakecp.Server) *harness {
	t.Helper()
	if srv == nil {
		srv = fakecp.Start(t)
	}
	tlsCfg, err := srv.AgentTLSConfig(agentID)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	events := make(chan string, 1000)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()), zap.Hooks(func(e zapcore.Entry) error {
		events <- e.Message
		return nil
	}))
	clock := clockwork.NewFakeClockAt(startedAt)
	exec := &fakeExecutor{started: make(chan struct{}, 16)}
	// The runner, the real one on a real journal, has a clock of its own so
	// that its timers do not count among the connection's.
	j, err := journal.Open(filepath.Join(t.TempDir(), journal.FileName), journal.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	attempts := make(chan sendAttempt, 100)
	var c *Client
	runner, err := commands.New(commands.Config{
		Journal:   j,
		Executors: map[string]executor.Executor{cmdkind.KindPull: exec},
		Send: func(ev *flotillav1.CommandEvent) error {
			err := c.SendEvent(ev)
			attempts <- sendAttempt{ev: ev, err: err}
			return err
		},
		Clock:  clockwork.NewFakeClockAt(startedAt),
		Logger: log.Named("commands"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := runner.Close(); err != nil {
			t.Error(err)
		}
	})
	c, err = New(Config{
		Endpoints: endpoint.Config{Addresses: []string{fakecp.Address}, ServerName: fakecp.ServerName},
		TLS:       fakecp.TLSFor(tlsCfg),
		Hello: func() *flotillav1.Hello {
			return &flotillav1.Hello{
				AgentId: agentID, Version: "1.2.3", Hostname: "web-1",
				Labels: map[string]string{"env": "test"}, Capabilities: []string{"heartbeat"},
				StartedAt: timestamppb.New(startedAt),
			}
		},
		Heartbeats:        &countingSource{clock: clock},
		Commands:          runner,
		HeartbeatInterval: interval,
		Backoff:           backoff.Config{Initial: time.Second, Max: 4 * time.Second, Jitter: backoff.NoJitter},
		Logger:            log,
		Clock:             clock,
		DialOptions:       []grpc.DialOption{srv.DialOption()},
	})
	if err != nil {
		t.Fatal(err)
	}
	testCtx, testCancel := context.WithTimeout(context.Background(), 5*time.Second)
	runCtx, stop := context.WithCancel(context.Background())
	h := &harness{
		srv: srv, clock: clock, logs: logs, events: events, ctx: testCtx, cancel: stop, done: make(chan error, 1),
		client: c, exec: exec, runner: runner, attempts: attempts,
	}
	go func() { h.done <- c.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		<-h.done
		testCancel()
	})
	return h
}

// stream waits for the agent's next stream and reads its journal report,
// which must be the first message after the welcome.
func (h *harness) stream(t *testing.T) *fakecp.Stream {
	t.Helper()
	st, _ := h.streamWithReport(t)
	return st
}

func (h *harness) streamWithReport(t *testing.T) (*fakecp.Stream, *flotillav1.JournalReport) {
	t.Helper()
	st, err := h.srv.NextStream(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := h.next(t, st)
	if msg.GetJournalReport() == nil {
		t.Fatalf("first message after the welcome is %v, want a journal report", msg)
	}
	return st, msg.GetJournalReport()
}

func (h *harness) next(t *testing.T, st *fakecp.Stream) *flotillav1.ConnectRequest {
	t.Helper()
	select {
	case msg := <-st.Received:
		return msg
	case <-h.ctx.Done():
		t.Fatal("no message from the agent")
		return nil
	}
}

func (h *harness) heartbeat(t *testing.T, st *fakecp.Stream) *flotillav1.Heartbeat {
	t.Helper()
	msg := h.next(t, st)
	if msg.GetHeartbeat() == nil {
		t.Fatalf("got %v, want a heartbeat", msg)
	}
	return msg.GetHeartbeat()
}

// waitLog waits until the agent logs msg. Tests use it to know which timers
// the agent waits on: a "disconnected" is logged once the session's
// heartbeat ticker is stopped and before the backoff timer starts.
func (h *harness) waitLog(t *testing.T, msg string) {
	t.Helper()
	for {
		select {
		case m := <-h.events:
			if m == msg {
				return
			}
		case <-h.ctx.Done():
			t.Fatalf("the agent never logged %q", msg)
		}
	}
}

// advance moves the fake clock once the agent waits on n timers or tickers.
func (h *harness) advance(t *testing.T, waiters int, d time.Duration) {
	t.Helper()
	if err := h.clock.BlockUntilContext(h.ctx, waiters); err != nil {
		t.Fatalf("the agent never waited on the clock: %v", err)
	}
	h.clock.Advance(d)
}

func TestHelloThenHeartbeats(t *testing.T) {
	h := start(t, nil)
	st := h.stream(t)

	hello := st.Hello
	if st.AgentID != agentID || hello.GetAgentId() != agentID || hello.GetVersion() != "1.2.3" ||
		hello.GetHostname() != "web-1" || hello.GetLabels()["env"] != "test" ||
		len(hello.GetCapabilities()) != 1 || !hello.GetStartedAt().AsTime().Equal(startedAt) {
		t.Errorf("unexpected hello %v", hello)
	}

	// One heartbeat right after the welcome, without the clock moving.
	if n := h.heartbeat(t, st).GetHost().GetUptimeSeconds(); n != 1 {
		t.Fatalf("first heartbeat #%d", n)
	}
	for want := uint64(2); want <= 3; want++ {
		h.advance(t, 1, interval) // the heartbeat ticker
		if n := h.heartbeat(t, st).GetHost().GetUptimeSeconds(); n != want {
			t.Fatalf("got heartbeat #%d, want #%d", n, want)
		}
	}
	if logs := h.logs.FilterMessage("connected").Len(); logs != 1 {
		t.Errorf("%d connected logs, want 1", logs)
	}
}

func TestCommandsGoToTheRunner(t *testing.T) {
	h := start(t, nil)
	st := h.stream(t)
	h.heartbeat(t, st)

	send := func(msg *flotillav1.ConnectResponse) {
		if err := st.Send(h.ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	// A cancel for a command that does not run needs no answer.
	send(&flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Cancel{Cancel: &flotillav1.CancelCommand{CommandId: "c0"}}})
	send(&flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Command{Command: pullCommand("c1")}})

	for _, want := range []flotillav1.CommandState{accepted, running, succeeded} {
		ev := h.next(t, st).GetCommandEvent()
		if ev.GetCommandId() != "c1" || ev.GetState() != want {
			t.Fatalf("got event %v, want c1 %s", ev, want)
		}
	}
	if h.logs.FilterMessage("cancel for a command that is not running ignored").Len() != 1 {
		t.Error("the cancel did not reach the runner")
	}
}

func TestReconnectAfterServerDropsTheStream(t *testing.T) {
	h := start(t, nil)
	for i := 0; i < 3; i++ {
		st := h.stream(t)
		h.heartbeat(t, st)
		st.Drop(status.Error(codes.Unavailable, "control plane restarting"))
		h.waitLog(t, "disconnected")
		h.advance(t, 1, time.Second) // the backoff timer
	}
	st := h.stream(t)
	h.heartbeat(t, st)

	// Each stream was welcomed, so the backoff was reset every time.
	for _, e := range h.logs.FilterMessage("disconnected").All() {
		if d := e.ContextMap()["backoff"]; d != time.Second {
			t.Errorf("backoff %v, want the initial 1s after a welcomed stream", d)
		}
		if e.ContextMap()["error"] == "" {
			t.Error("disconnect logged without a reason")
		}
	}
}

func TestBackoffGrowsWhileUnwelcomed(t *testing.T) {
	srv := fakecp.Start(t)
	srv.WithholdWelcome(true)
	h := start(t, srv)

	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for _, delay := range want {
		h.advance(t, 1, DefaultWelcomeTimeout) // the welcome timer
		h.waitLog(t, "disconnected")
		h.advance(t, 1, delay) // the backoff timer
	}

	var delays []time.Duration
	for _, e := range h.logs.FilterMessage("disconnected").All() {
		delays = append(delays, e.ContextMap()["backoff"].(time.Duration))
		if e.ContextMap()["error"] != "no welcome within 30s" {
			t.Errorf("reason %q", e.ContextMap()["error"])
		}
	}
	if len(delays) != len(want) {
		t.Fatalf("delays %v, want %v", delays, want)
	}
	for i := range want {
		if delays[i] != want[i] {
			t.Fatalf("delays %v, want %v (capped exponential)", delays, want)
		}
	}
}

func TestGracefulShutdown(t *testing.T) {
	h := start(t, nil)
	st := h.stream(t)
	h.heartbeat(t, st)

	h.cancel()
	select {
	case <-st.ClosedByClient:
	case <-h.ctx.Done():
		t.Fatal("the agent did not close its side of the stream")
	}
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
		h.done <- nil // for the cleanup
	case <-h.ctx.Done():
		t.Fatal("Run did not return")
	}
	if h.logs.FilterMessage("the control plane did not end the stream in time; aborting it").Len() != 0 {
		t.Error("the stream was aborted although the server ended it")
	}
}

func TestShutdownAbortsAStreamTheServerKeepsOpen(t *testing.T) {
	srv := fakecp.Start(t)
	srv.HoldStreamsOnCloseSend()
	h := start(t, srv)
	st := h.stream(t)
	h.heartbeat(t, st)

	h.cancel()
	<-st.ClosedByClient                   // the heartbeat ticker is stopped by now
	h.advance(t, 1, DefaultShutdownGrace) // the grace timer
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
		h.done <- nil
	case <-h.ctx.Done():
		t.Fatal("Run did not return after the grace period")
	}
	<-st.Done()
}

func TestNewValidates(t *testing.T) {
	valid := Config{
		Endpoints: endpoint.Config{Addresses: []string{"cp:1"}}, TLS: fakecp.TLSFor(&tlsConfig), Hello: func() *flotillav1.Hello { return nil },
		Heartbeats: &countingSource{}, Commands: nopCommands{}, Logger: zap.NewNop(),
	}
	if _, err := New(valid); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"no address", func(c *Config) { c.Endpoints.Addresses = nil }},
		{"address without port", func(c *Config) { c.Endpoints.Addresses = []string{"cp:1", "cp"} }},
		{"no TLS", func(c *Config) { c.TLS = nil }},
		{"no hello", func(c *Config) { c.Hello = nil }},
		{"no heartbeats", func(c *Config) { c.Heartbeats = nil }},
		{"no commands", func(c *Config) { c.Commands = nil }},
		{"no logger", func(c *Config) { c.Logger = nil }},
		{"bad backoff", func(c *Config) { c.Backoff.Multiplier = 0.5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.mutate(&cfg)
			if _, err := New(cfg); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

var tlsConfig tls.Config

func TestShutdownBeforeWelcome(t *testing.T) {
	srv := fakecp.Start(t)
	srv.WithholdWelcome(true)
	h := start(t, srv)
	if err := h.clock.BlockUntilContext(h.ctx, 1); err != nil { // waiting for the welcome
		t.Fatal(err)
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
		h.done <- nil
	case <-h.ctx.Done():
		t.Fatal("Run did not return")
	}
}
