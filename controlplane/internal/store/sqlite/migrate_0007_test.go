package sqlite

import (
	"context"
	"testing"

	"flotilla.dev/controlplane/internal/store"
)

// TestMigration0007NumbersExistingAgents: agents registered before 0007
// get no stream holder and distinct status_seq values, and the next write
// of a row takes one above all of them.
func TestMigration0007NumbersExistingAgents(t *testing.T) {
	ctx := context.Background()
	ms, err := store.LoadMigrations(embeddedMigrations())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 7 || ms[6].Version != 7 {
		t.Fatalf("migrations %v: want 0007 seventh", ms)
	}
	db := openRawDB(t)
	if err := migrate(ctx, db, ms[:6]); err != nil {
		t.Fatalf("migrate to 6: %v", err)
	}
	if _, err := db.Exec(`INSERT INTO join_tokens (id, hash, description, max_uses, uses) VALUES ('jt', x'01', '', 2, 2)`); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := db.Exec(`INSERT INTO agents (id, hostname, version, state, state_reason, peer_address, cert_serial, join_token_id)
			VALUES (?, ?, '', 'connected', '', '', '', 'jt')`, id, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := migrate(ctx, db, ms); err != nil {
		t.Fatalf("migrate to the last: %v", err)
	}
	s := &Store{write: db, read: db}
	before, err := s.ListAgentsChanged(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 2 || before[0].StatusSeq <= 0 || before[0].StatusSeq == before[1].StatusSeq ||
		before[0].StreamHolder != "" || before[1].StreamHolder != "" {
		t.Fatalf("agents after 0007 = %+v, want two with distinct positive status_seq and no holder", before)
	}
	if _, err := s.UpdateAgentStatuses(ctx, []store.AgentStatus{{ID: before[0].ID, State: store.AgentDisconnected}}); err != nil {
		t.Fatal(err)
	}
	after, err := s.ListAgentsChanged(ctx, before[1].StatusSeq, 10)
	if err != nil || len(after) != 1 || after[0].ID != before[0].ID {
		t.Fatalf("ListAgentsChanged after the last migrated value = %+v, %v; want the agent just written", after, err)
	}
}
