package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// TestSnapshotWhileOpen copies a database that a Store keeps open and
// writes to, and opens the copy as a store with the same data.
func TestSnapshotWhileOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := Open(ctx, filepath.Join(dir, "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	tok := store.JoinToken{ID: "tok-1", Hash: []byte("hash-1"), Description: "before the snapshot", MaxUses: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateJoinToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "copy.db")
	version, err := Snapshot(ctx, filepath.Join(dir, "flotilla.db"), dst)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := LatestSchemaVersion()
	if err != nil || version != latest || latest < 5 {
		t.Errorf("snapshot schema version %d, latest %d (%v)", version, latest, err)
	}
	if err := CheckIntegrity(ctx, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := Snapshot(ctx, filepath.Join(dir, "flotilla.db"), dst); err == nil {
		t.Error("a snapshot over an existing file succeeded")
	}
	cp, err := Open(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	got, err := cp.GetJoinToken(ctx, "tok-1")
	if err != nil || got.ID != "tok-1" || got.Description != tok.Description {
		t.Errorf("the copy's token = %+v, %v", got, err)
	}
}

func TestSnapshotRefusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	if _, err := Snapshot(ctx, missing, filepath.Join(dir, "out.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("snapshot of a missing file: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Error("the snapshot created the missing database")
	}
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte("this is not a database, just text long enough to look like a header"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckIntegrity(ctx, junk); !errors.Is(err, ErrNotADatabase) {
		t.Errorf("CheckIntegrity(junk) = %v", err)
	}
	if _, err := SchemaVersionOf(ctx, junk); err == nil {
		t.Error("SchemaVersionOf(junk) succeeded")
	}
}
