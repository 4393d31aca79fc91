package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// Change seqs keep increasing across a transaction that failed after
// reserving a block and across a reopen (blocks are reserved in the
// database, handed out from memory).
func TestChangeSeqsIncreaseAcrossFailuresAndReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flotilla.db")
	s := openTestStoreAt(t, path)
	hc := func(id string) store.HostCommand {
		return store.HostCommand{ID: id, AgentID: "a", Kind: "pull", Spec: []byte{}, State: 1, CreatedAt: time.Now()}
	}
	last := func(s *Store) int64 {
		t.Helper()
		seq, err := s.LastHostCommandChange(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	if err := s.CreateHostCommands(ctx, []store.HostCommand{hc("c1")}); err != nil {
		t.Fatal(err)
	}
	first := last(s)
	// A conflict fails the transaction that reserved the first block.
	s.seqs.forget()
	if err := s.CreateHostCommands(ctx, []store.HostCommand{hc("c2"), hc("c1")}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateHostCommands with an existing ID = %v, want ErrConflict", err)
	}
	if err := s.CreateHostCommands(ctx, []store.HostCommand{hc("c3")}); err != nil {
		t.Fatal(err)
	}
	afterFailure := last(s)
	if afterFailure <= first {
		t.Fatalf("seq after a failed transaction = %d, want above %d", afterFailure, first)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStoreAt(t, path)
	if err := s.CreateHostCommands(ctx, []store.HostCommand{hc("c4")}); err != nil {
		t.Fatal(err)
	}
	if got := last(s); got <= afterFailure {
		t.Fatalf("seq after a reopen = %d, want above %d", got, afterFailure)
	}
}
