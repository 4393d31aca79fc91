package server_test

import (
	"context"
	"crypto/tls"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/store"
)

// waitFor bounds every wait of these tests: long enough never to fail a
// correct run on a loaded machine, short enough that a hang fails quickly.
// No test asserts that anything happens within a time.
const waitFor = 10 * time.Second

// apiToken stores an operator API token with role and returns its secret;
// its ID is "at-"+role.
func (h *harness) apiToken(role string) string {
	h.t.Helper()
	secret, hash, err := auth.NewSecret("fat_")
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.cp.Store().CreateAPIToken(context.Background(), store.APIToken{
		ID: "at-" + role, Name: role, Hash: hash, Role: role, CreatedAt: time.Now(),
	}); err != nil {
		h.t.Fatalf("CreateAPIToken: %v", err)
	}
	return secret
}

// scriptedAgent is a test agent driven step by step by the test: it
// registers with a join token, connects with its certificate, sends a hello
// and reads the welcome; then the test reads what the control plane sends
// (Msgs, across reconnects) and answers with command events, journal
// reports and heartbeats.
type scriptedAgent struct {
	t        *testing.T
	agent    *testAgent
	id       string
	hostname string
	labels   map[string]string
	// msgs receives every ConnectResponse after the welcome, from every
	// stream the agent opened, in order.
	msgs chan *flotillav1.ConnectResponse
	seq  atomic.Int64

	mu  sync.Mutex
	h   *harness
	cur *agentStream
	// gone stops keepBeating's heartbeats: the agent stays away.
	gone bool
}

// agentStream is one Connect stream of a scripted agent.
type agentStream struct {
	stream grpc.BidiStreamingClient[flotillav1.ConnectRequest, flotillav1.ConnectResponse]
	cancel context.CancelFunc
	done   chan struct{} // closed when the receive loop ended
	err    error         // why it ended; valid after done
}

// newScriptedAgent registers an agent (without connecting it).
func (h *harness) newScriptedAgent(token, hostname string, labels map[string]string) *scriptedAgent {
	h.t.Helper()
	ta, _, err := h.register(token, hostname, labels)
	if err != nil {
		h.t.Fatalf("Register %s: %v", hostname, err)
	}
	return &scriptedAgent{t: h.t, agent: ta, id: ta.id, hostname: hostname, labels: labels,
		msgs: make(chan *flotillav1.ConnectResponse, 256)}
}

// scriptedFleet registers n agents through one join token that pins
// fleet=name (hostnames name-a, name-b, ...; their IDs sort in that order)
// and connects those with connect set.
func (h *harness) scriptedFleet(name string, n int, connect bool) []*scriptedAgent {
	h.t.Helper()
	token := h.joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: int32(n), Labels: map[string]string{"fleet": name}})
	agents := make([]*scriptedAgent, n)
	for i := range agents {
		agents[i] = h.newScriptedAgent(token, name+"-"+string(rune('a'+i)), map[string]string{"role": "web"})
		if connect {
			agents[i].connect(h)
		}
	}
	return agents
}

// connect opens a stream to h, sends the hello, checks the welcome and
// starts receiving. It returns once the control plane has also delivered
// what was waiting for the agent at connect time (the commands it resends
// on connect are queued before the receive side starts, which the
// heartbeat round trip proves).
func (a *scriptedAgent) connect(h *harness) {
	a.t.Helper()
	cfg := h.serverTLS()
	cfg.Certificates = []tls.Certificate{a.agent.cert}
	ctx, cancel := context.WithCancel(context.Background())
	a.t.Cleanup(cancel)
	stream, err := flotillav1.NewAgentServiceClient(h.dial(cfg)).Connect(ctx)
	if err != nil {
		cancel()
		a.t.Fatalf("%s: Connect: %v", a.id, err)
	}
	if err := stream.Send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Hello{Hello: &flotillav1.Hello{
		AgentId: a.id, Version: "v-test", Hostname: a.hostname, Labels: a.labels, Capabilities: []string{"docker"},
		StartedAt: timestamppb.Now(),
	}}}); err != nil {
		cancel()
		a.t.Fatalf("%s: send hello: %v", a.id, err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetWelcome().GetAgentId() != a.id {
		cancel()
		a.t.Fatalf("%s: first message = %v, %v; want a welcome", a.id, first, err)
	}
	s := &agentStream{stream: stream, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			m, err := stream.Recv()
			if err != nil {
				s.err = err
				return
			}
			select {
			case a.msgs <- m:
			case <-ctx.Done():
				s.err = ctx.Err()
				return
			}
		}
	}()
	a.mu.Lock()
	a.h, a.cur = h, s
	a.mu.Unlock()
	a.heartbeat()
}

// drop cancels the current stream, as a crashed agent or a broken network
// would, and waits for its receive loop to end.
func (a *scriptedAgent) drop() {
	a.t.Helper()
	a.mu.Lock()
	s := a.cur
	a.mu.Unlock()
	if s == nil {
		return
	}
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(waitFor):
		a.t.Fatalf("%s: the stream did not end after cancel", a.id)
	}
}

// reconnect drops the current stream and connects to h.
func (a *scriptedAgent) reconnect(h *harness) {
	a.t.Helper()
	a.drop()
	a.connect(h)
}

// send sends one message on the current stream.
func (a *scriptedAgent) send(msg *flotillav1.ConnectRequest) {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil {
		a.t.Fatalf("%s: not connected", a.id)
	}
	if err := a.cur.stream.Send(msg); err != nil {
		a.t.Fatalf("%s: send: %v", a.id, err)
	}
}

// event sends a command event.
func (a *scriptedAgent) event(id string, state flotillav1.CommandState, message string, result *flotillav1.CommandResult) {
	a.t.Helper()
	a.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_CommandEvent{CommandEvent: &flotillav1.CommandEvent{
		CommandId: id, State: state, Message: message, At: timestamppb.Now(), Result: result,
	}}})
}

// journal sends a journal report.
func (a *scriptedAgent) journal(entries ...*flotillav1.CommandEvent) {
	a.t.Helper()
	a.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_JournalReport{JournalReport: &flotillav1.JournalReport{Entries: entries}}})
}

// heartbeat sends a heartbeat and waits until the control plane recorded
// it, or a later one. Messages on a stream are handled in order, so
// everything the agent sent before has been applied when this returns.
// keepBeating may send its own heartbeats meanwhile: each carries a higher
// sequence than the ones before it, and any of them recorded after this
// one was sent also proves the earlier messages applied, so the wait is for
// "at least this sequence", never for this exact one (which a quicker
// background beat can overwrite before the first look).
func (a *scriptedAgent) heartbeat() {
	a.t.Helper()
	at := timestamppb.New(time.Unix(1_700_000_000, a.seq.Add(1)))
	a.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Heartbeat{Heartbeat: &flotillav1.Heartbeat{
		ObservedAt: at, Host: &flotillav1.HostMetrics{CpuPercent: 10, MemoryPercent: 20},
	}}})
	a.mu.Lock()
	h := a.h
	a.mu.Unlock()
	eventually(a.t, waitFor, a.id+"'s heartbeat to be recorded", func() bool {
		got, ok := h.srv.Registry().Get(a.id)
		return ok && got.LastHeartbeat != nil && !got.LastHeartbeat.GetObservedAt().AsTime().Before(at.AsTime())
	})
}

// next returns the next message from the control plane.
func (a *scriptedAgent) next() *flotillav1.ConnectResponse {
	a.t.Helper()
	select {
	case m := <-a.msgs:
		return m
	case <-time.After(waitFor):
		a.t.Fatalf("%s: no message from the control plane", a.id)
		return nil
	}
}

// nextCommand returns the next message, which must be a command.
func (a *scriptedAgent) nextCommand() *flotillav1.Command {
	a.t.Helper()
	m := a.next()
	if m.GetCommand() == nil {
		a.t.Fatalf("%s: got %v, want a command", a.id, m)
	}
	return m.GetCommand()
}

// nextCancel returns the next message, which must be a cancel.
func (a *scriptedAgent) nextCancel() *flotillav1.CancelCommand {
	a.t.Helper()
	m := a.next()
	if m.GetCancel() == nil {
		a.t.Fatalf("%s: got %v, want a cancel", a.id, m)
	}
	return m.GetCancel()
}

// expectNothing fails if a message is waiting. Callers make sure first
// that anything the control plane would have sent was sent (a heartbeat
// round trip of the agent whose event would cause it).
func (a *scriptedAgent) expectNothing(why string) {
	a.t.Helper()
	select {
	case m := <-a.msgs:
		a.t.Fatalf("%s: unexpected message %v (%s)", a.id, m, why)
	default:
	}
}

// streamOpen reports whether the current stream is still receiving.
func (a *scriptedAgent) streamOpen() (bool, error) {
	a.mu.Lock()
	s := a.cur
	a.mu.Unlock()
	select {
	case <-s.done:
		return false, s.err
	default:
		return true, nil
	}
}
