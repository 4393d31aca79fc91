package fleet

import (
	"errors"
	"sync"
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
	done    chan struct{}
	once    sync.Once
	err     error
}

func newSession(agentID string) *Session {
	return &Session{agentID: agentID, done: make(chan struct{})}
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
