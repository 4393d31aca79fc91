package fleet

import (
	"errors"
	"sync"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

var (
	errReplaced = errors.New("replaced by a newer stream from the same agent")
	errDetached = errors.New("stream detached")
)

// ErrLost is the reason a stream is closed when its agent stopped
// heartbeating while the connection looked open (a half-open TCP connection
// or a network partition).
var ErrLost = errors.New("no heartbeat within agent_lost_after; closing the stream")

// ErrShuttingDown is the reason streams are closed when the control plane stops.
var ErrShuttingDown = errors.New("control plane shutting down")

// Session is one open stream of one agent. The stream's handler watches
// Done and stops with Err when the registry closes it.
type Session struct {
	agentID string
	// entry is the agent's record in the registry, guarded by the
	// registry's lock. The session keeps it rather than looking the agent
	// up by ID: that map lookup was 4 % of the control plane's CPU at
	// 10,000 heartbeats a second. A removed agent's entry no longer points
	// to the session, which is all the session's callers check.
	entry *entry
	done  chan struct{}
	once  sync.Once
	err   error

	// The outbox is unbounded on purpose: what goes out (commands,
	// cancels) is already stored, small and rare; dropping it would stall
	// a command until the next reconnect.
	mu     sync.Mutex
	outbox []*flotillav1.ConnectResponse
	ready  chan struct{} // 1-buffered: "the outbox is not empty"
}

func newSession(agentID string) *Session {
	return &Session{agentID: agentID, done: make(chan struct{}), ready: make(chan struct{}, 1)}
}

// Send queues a message for the agent; the stream's handler sends it. It
// reports false when the session has ended.
func (s *Session) Send(msg *flotillav1.ConnectResponse) bool {
	select {
	case <-s.done:
		return false
	default:
	}
	s.mu.Lock()
	s.outbox = append(s.outbox, msg)
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return true
}

// Ready signals that Take has messages.
func (s *Session) Ready() <-chan struct{} { return s.ready }

// Take removes and returns the queued messages.
func (s *Session) Take() []*flotillav1.ConnectResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.outbox
	s.outbox = nil
	return out
}

// AgentID is the agent the session belongs to.
func (s *Session) AgentID() string { return s.agentID }

// Done is closed when the registry ends the session.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the session was ended; valid after Done is closed.
func (s *Session) Err() error {
	<-s.done
	return s.err
}

func (s *Session) close(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
}

// IsReplaced reports whether err means a newer stream took over.
func IsReplaced(err error) bool { return errors.Is(err, errReplaced) }

// DeregisteredError is why a deregistered agent's stream is closed.
type DeregisteredError struct{ Message string }

func (e *DeregisteredError) Error() string { return e.Message }
