package commands

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
)

var errStoreDown = errors.New("store down (test)")

// memStore keeps commands in memory and records every UpdateHostCommands
// call. hold, when set, makes the next UpdateHostCommands wait until the
// test closes the channel it was given; fail fails chosen calls. Methods
// the command path does not use are left to the nil embedded Store and
// panic if called.
type memStore struct {
	store.Store

	mu      sync.Mutex
	fleet   map[string]store.FleetCommand
	hosts   map[string]store.HostCommand
	updates [][]store.HostCommand // UpdateHostCommands calls, in order
	creates [][]store.HostCommand // host commands of each CreateFleetCommand
	hold    chan struct{}
	fail    func(call int) bool // call counts UpdateHostCommands from 1
}

func newMemStore() *memStore {
	return &memStore{fleet: make(map[string]store.FleetCommand), hosts: make(map[string]store.HostCommand)}
}

// holdNext makes the next UpdateHostCommands wait until the returned
// channel is closed.
func (s *memStore) holdNext() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = make(chan struct{})
	return s.hold
}

func (s *memStore) CreateFleetCommand(_ context.Context, fc store.FleetCommand, hosts []store.HostCommand) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fleet[fc.ID] = fc
	for _, h := range hosts {
		s.hosts[h.ID] = h
	}
	s.creates = append(s.creates, slices.Clone(hosts))
	return nil
}

func (s *memStore) CreateHostCommands(_ context.Context, hosts []store.HostCommand) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hosts {
		s.hosts[h.ID] = h
	}
	return nil
}

func (s *memStore) UpdateHostCommands(_ context.Context, hosts []store.HostCommand, _ map[string]*store.Fence, _ []store.CommandEvent) error {
	s.mu.Lock()
	s.updates = append(s.updates, slices.Clone(hosts))
	call := len(s.updates)
	hold := s.hold
	s.hold = nil
	fail := s.fail != nil && s.fail(call)
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if fail {
		return errStoreDown
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hosts {
		s.hosts[h.ID] = h
	}
	return nil
}

func (s *memStore) UpdateFleetCommand(_ context.Context, id string, state int32, finishedAt time.Time, summary string, _ *store.Fence) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fc, ok := s.fleet[id]
	if !ok {
		return store.ErrNotFound
	}
	fc.State, fc.FinishedAt, fc.Summary = state, finishedAt, summary
	s.fleet[id] = fc
	return nil
}

func (s *memStore) GetFleetCommand(_ context.Context, id string) (store.FleetCommand, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fc, ok := s.fleet[id]
	if !ok {
		return store.FleetCommand{}, store.ErrNotFound
	}
	return fc, nil
}

func (s *memStore) GetHostCommand(_ context.Context, id string) (store.HostCommand, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hosts[id]
	if !ok {
		return store.HostCommand{}, store.ErrNotFound
	}
	return h, nil
}

func (s *memStore) ListHostCommands(_ context.Context, fleetID string) ([]store.HostCommand, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.HostCommand
	for _, h := range s.hosts {
		if h.FleetCommandID == fleetID {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b store.HostCommand) int { return cmp.Compare(a.AgentID, b.AgentID) })
	return out, nil
}

// updateCalls returns the UpdateHostCommands calls so far.
func (s *memStore) updateCalls() [][]store.HostCommand {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.updates)
}

func (s *memStore) stored(t *testing.T, id string) store.HostCommand {
	t.Helper()
	h, err := s.GetHostCommand(context.Background(), id)
	if err != nil {
		t.Fatalf("stored %s: %v", id, err)
	}
	return h
}

// testEnv is a dispatcher and a manager on a memStore, with agents whose
// sessions are open, and every update the listeners saw.
type testEnv struct {
	st       *memStore
	reg      *fleet.Registry
	d        *Dispatcher
	m        *Manager
	sessions map[string]*fleet.Session

	mu      sync.Mutex
	updates []Update
}

func newTestEnv(t *testing.T, agents ...string) *testEnv {
	t.Helper()
	st := newMemStore()
	reg, err := fleet.New(fleet.Config{Store: st, Logger: zap.NewNop(), LostAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDispatcher(DispatcherConfig{Store: st, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(ManagerConfig{Store: st, Registry: reg, Dispatcher: d})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{st: st, reg: reg, d: d, m: m, sessions: make(map[string]*fleet.Session)}
	d.Listen(func(u Update) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.updates = append(e.updates, u)
	})
	for _, id := range agents {
		reg.Add(store.Agent{ID: id, State: store.AgentDisconnected, RegisteredAt: time.Now()})
		s, err := reg.Attach(id, &flotillav1.Hello{AgentId: id}, "10.0.0.1:1")
		if err != nil {
			t.Fatal(err)
		}
		e.sessions[id] = s
	}
	return e
}

// seenStates returns the states of the updates listeners saw for id.
func (e *testEnv) seenStates(id string) []flotillav1.CommandState {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []flotillav1.CommandState
	for _, u := range e.updates {
		if u.Command.ID == id {
			out = append(out, flotillav1.CommandState(u.Command.State))
		}
	}
	return out
}

// sentCommands returns the IDs of the commands queued to agent's session.
func (e *testEnv) sentCommands(agent string) []string {
	var out []string
	for _, msg := range e.sessions[agent].Take() {
		if c := msg.GetCommand(); c != nil {
			out = append(out, c.GetId())
		}
	}
	return out
}

// queuedCommand creates a queued host command for agent in the store and
// the dispatcher.
func (e *testEnv) queuedCommand(t *testing.T, id, agent string) {
	t.Helper()
	hc := store.HostCommand{ID: id, AgentID: agent, Kind: command.KindPull, Spec: []byte{},
		State: int32(flotillav1.CommandState_COMMAND_STATE_PENDING), Message: "queued", CreatedAt: time.Now()}
	if err := e.st.CreateHostCommands(context.Background(), []store.HostCommand{hc}); err != nil {
		t.Fatal(err)
	}
	e.d.Track([]store.HostCommand{hc}, nil)
}
