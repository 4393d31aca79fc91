package backups

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// fakeCommands stands for commands.Manager: it keeps the started commands
// and lets the test end them.
type fakeCommands struct {
	mu       sync.Mutex
	agents   []string
	started  []string // IDs in order
	reqs     map[string]*flotillav1.RunCommandRequest
	cmds     map[string]*flotillav1.FleetCommand
	startErr error
}

func newFakeCommands(agents ...string) *fakeCommands {
	return &fakeCommands{agents: agents, reqs: map[string]*flotillav1.RunCommandRequest{}, cmds: map[string]*flotillav1.FleetCommand{}}
}

func (f *fakeCommands) StartWithID(_ context.Context, id string, req *flotillav1.RunCommandRequest, _ string) (*flotillav1.FleetCommand, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		return nil, f.startErr
	}
	if _, ok := f.cmds[id]; ok {
		return nil, fmt.Errorf("command %s: %w", id, store.ErrConflict)
	}
	fc := &flotillav1.FleetCommand{Id: id, State: flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING}
	for _, a := range f.agents {
		fc.Hosts = append(fc.Hosts, &flotillav1.HostCommand{AgentId: a, CommandId: id + "." + a, State: flotillav1.CommandState_COMMAND_STATE_RUNNING})
	}
	f.cmds[id], f.reqs[id] = fc, req
	f.started = append(f.started, id)
	return proto.Clone(fc).(*flotillav1.FleetCommand), nil
}

func (f *fakeCommands) Get(_ context.Context, id string, _ flotillav1.CommandView) (*flotillav1.FleetCommand, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fc, ok := f.cmds[id]
	if !ok {
		return nil, &fault.NotFoundError{Kind: "command", ID: id}
	}
	return proto.Clone(fc).(*flotillav1.FleetCommand), nil
}

// finish ends a command: every host succeeds with a backup result, except
// those in failed.
func (f *fakeCommands) finish(id string, at time.Time, failed ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fc := f.cmds[id]
	fc.State = flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED
	db := f.reqs[id].GetSpec().GetBackup().GetDatabase()
	for _, h := range fc.Hosts {
		h.FinishedAt = timestamppb.New(at)
		if contains(failed, h.AgentId) {
			h.State, h.Message = flotillav1.CommandState_COMMAND_STATE_FAILED, "pg_dump: connection refused"
			fc.State = flotillav1.FleetCommandState_FLEET_COMMAND_STATE_FAILED
			continue
		}
		h.State = flotillav1.CommandState_COMMAND_STATE_SUCCEEDED
		h.Result = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Backup{Backup: &flotillav1.BackupResult{
			Database: db, Path: "/var/lib/flotilla/backups/" + db + ".dump", SizeBytes: 4096, Sha256: "ab12",
			StartedAt: timestamppb.New(at.Add(-time.Minute)),
		}}}
	}
}

func (f *fakeCommands) startedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.started...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// putPolicy normalizes and stores a policy created at created.
func putPolicy(t *testing.T, st store.Store, p *flotillav1.BackupPolicy, created time.Time) {
	t.Helper()
	def, err := Normalize(p)
	if err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	spec, _ := proto.Marshal(def)
	if err := st.CreateBackupPolicy(context.Background(), store.BackupPolicy{Name: def.Name, Spec: spec, CreatedBy: "operator:t", CreatedAt: created, UpdatedAt: created}); err != nil {
		t.Fatal(err)
	}
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func listedIDs(t *testing.T, st store.Store, q store.BackupQuery) []string {
	t.Helper()
	list, err := st.ListBackups(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range list {
		ids = append(ids, b.ID)
	}
	sort.Strings(ids)
	return ids
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// finishWith ends a command with the result (and state) result gives each
// host.
func (f *fakeCommands) finishWith(id string, at time.Time, result func(agent string) (*flotillav1.CommandResult, bool)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fc := f.cmds[id]
	fc.State = flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED
	for _, h := range fc.Hosts {
		res, ok := result(h.AgentId)
		h.FinishedAt, h.Result, h.State = timestamppb.New(at), res, flotillav1.CommandState_COMMAND_STATE_SUCCEEDED
		if !ok {
			h.State, h.Message = flotillav1.CommandState_COMMAND_STATE_FAILED, "drill failed"
			fc.State = flotillav1.FleetCommandState_FLEET_COMMAND_STATE_FAILED
		}
	}
}

func (f *fakeCommands) spec(id string) *flotillav1.CommandSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[id].GetSpec()
}
