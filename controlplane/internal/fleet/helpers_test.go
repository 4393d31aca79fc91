package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// TestMain fails the run if RunLiveness or RunFlusher (or the store) leaves
// a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the fake clock's start; whole seconds so that stored times compare
// exactly.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const lostAfter = 30 * time.Second

// fakeClock is a settable clock, safe for the registry's goroutines.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// openStore opens a real SQLite store in a temporary directory.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	})
	return st
}

// newRegistry returns a loaded registry on st with LostAfter 30s,
// PersistInterval 1m and a flush interval long enough that only explicit
// Flush calls write.
func newRegistry(t *testing.T, st store.Store, clk *fakeClock) *fleet.Registry {
	t.Helper()
	r, err := fleet.New(fleet.Config{
		Store:           st,
		Logger:          zaptest.NewLogger(t),
		Now:             clk.Now,
		LostAfter:       lostAfter,
		ReconnectGrace:  lostAfter, // TestReconnectGrace covers a longer one
		PersistInterval: time.Minute,
		FlushInterval:   time.Hour,
	})
	if err != nil {
		t.Fatalf("fleet.New: %v", err)
	}
	if err := r.Load(context.Background()); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return r
}

// register stores an agent the way AgentService.Register does (through a
// single-use join token, registered at now, disconnected) and adds it to r.
func register(t *testing.T, st store.Store, r *fleet.Registry, id string, now time.Time, labels, pinned map[string]string) store.Agent {
	t.Helper()
	ctx := context.Background()
	hash := []byte("join-token-hash-for-" + id)
	tok := store.JoinToken{ID: "jt-" + id, Hash: hash, Labels: pinned, MaxUses: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateJoinToken(ctx, tok); err != nil {
		t.Fatalf("CreateJoinToken: %v", err)
	}
	rec, err := st.RegisterAgent(ctx, hash, now, func(jt store.JoinToken) (store.Agent, error) {
		return store.Agent{
			ID:             id,
			Hostname:       "host-" + id,
			Labels:         fleet.MergeLabels(labels, jt.Labels),
			PinnedLabels:   jt.Labels,
			State:          store.AgentDisconnected,
			StateReason:    "registered; waiting for the first stream",
			StateChangedAt: now,
			RegisteredAt:   now,
		}, nil
	})
	if err != nil {
		t.Fatalf("RegisterAgent(%s): %v", id, err)
	}
	if r != nil {
		r.Add(rec)
	}
	return rec
}

func helloMsg(id string, labels map[string]string) *flotillav1.Hello {
	return &flotillav1.Hello{AgentId: id, Version: "v1.2.3", Hostname: "web-" + id, Labels: labels, Capabilities: []string{"heartbeat"}}
}

func heartbeatMsg(cpu float64, healthy bool) *flotillav1.Heartbeat {
	return &flotillav1.Heartbeat{
		Host: &flotillav1.HostMetrics{CpuPercent: cpu, MemoryPercent: 40, Load1: 0.5,
			Disks: []*flotillav1.DiskUsage{{Path: "/", UsedPercent: 55}, {Path: "/data", UsedPercent: 70}}},
		App: &flotillav1.AppHealth{Healthy: healthy, Status: "healthy", Latency: durationpb.New(250 * time.Millisecond)},
		Databases: []*flotillav1.DatabaseStats{{Name: "app", Connections: 7, WalArchiver: &flotillav1.WalArchiverStats{
			ArchivedCount: 42, FailedCount: 3, LastArchivedAt: timestamppb.New(time.Unix(1_796_000_000, 0)),
			ArchiveTimelines: []*flotillav1.WalTimelineContinuity{{Timeline: 1, ArchivedSegments: 30},
				{Timeline: 2, ArchivedSegments: 10, MissingSegments: 2}},
		}}},
	}
}

func mustAttach(t *testing.T, r *fleet.Registry, id string, labels map[string]string, peer string) *fleet.Session {
	t.Helper()
	s, err := r.Attach(id, helloMsg(id, labels), peer)
	if err != nil {
		t.Fatalf("Attach(%s): %v", id, err)
	}
	return s
}

func mustHeartbeat(t *testing.T, r *fleet.Registry, s *fleet.Session, hb *flotillav1.Heartbeat) {
	t.Helper()
	if err := r.Heartbeat(s, hb); err != nil {
		t.Fatalf("Heartbeat(%s): %v", s.AgentID(), err)
	}
}

func mustGet(t *testing.T, r *fleet.Registry, id string) fleet.Agent {
	t.Helper()
	a, ok := r.Get(id)
	if !ok {
		t.Fatalf("Get(%s): not found", id)
	}
	return a
}

func mustStored(t *testing.T, st store.Store, id string) store.Agent {
	t.Helper()
	a, err := st.GetAgent(context.Background(), id)
	if err != nil {
		t.Fatalf("store.GetAgent(%s): %v", id, err)
	}
	return a
}

func mustFlush(t *testing.T, r *fleet.Registry) {
	t.Helper()
	if err := r.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// isClosed reports whether the session has been ended, without blocking.
func isClosed(s *fleet.Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// decodeHeartbeat decodes a stored heartbeat blob; nil for nil.
func decodeHeartbeat(t *testing.T, b []byte) *flotillav1.Heartbeat {
	t.Helper()
	if b == nil {
		return nil
	}
	hb := &flotillav1.Heartbeat{}
	if err := proto.Unmarshal(b, hb); err != nil {
		t.Fatalf("stored heartbeat does not decode: %v", err)
	}
	return hb
}

func decodeHello(t *testing.T, b []byte) *flotillav1.Hello {
	t.Helper()
	if b == nil {
		return nil
	}
	h := &flotillav1.Hello{}
	if err := proto.Unmarshal(b, h); err != nil {
		t.Fatalf("stored hello does not decode: %v", err)
	}
	return h
}

var errStoreDown = errors.New("store down (test)")

// recordingStore is the real store with UpdateAgentStatuses recorded and,
// when failNext > 0, failed that many times.
type recordingStore struct {
	store.Store
	mu       sync.Mutex
	failNext int
	batches  [][]store.AgentStatus
}

func (s *recordingStore) UpdateAgentStatuses(ctx context.Context, updates []store.AgentStatus) ([]string, error) {
	s.mu.Lock()
	s.batches = append(s.batches, append([]store.AgentStatus(nil), updates...))
	fail := s.failNext > 0
	if fail {
		s.failNext--
	}
	s.mu.Unlock()
	if fail {
		return nil, errStoreDown
	}
	return s.Store.UpdateAgentStatuses(ctx, updates)
}

func (s *recordingStore) failOnce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = 1
}

// takeBatches returns the batches written since the last call.
func (s *recordingStore) takeBatches() [][]store.AgentStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.batches
	s.batches = nil
	return b
}

func batchIDs(batch []store.AgentStatus) []string {
	ids := make([]string, len(batch))
	for i, u := range batch {
		ids[i] = u.ID
	}
	return ids
}

func agentIDs(page []fleet.Agent) []string {
	ids := make([]string, 0, len(page))
	for _, a := range page {
		ids = append(ids, a.Record.ID)
	}
	return ids
}

func at(d time.Duration) time.Time { return t0.Add(d) }

func fmtState(a fleet.Agent) string {
	return fmt.Sprintf("%s (%q)", a.Record.State, a.Record.StateReason)
}
