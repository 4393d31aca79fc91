package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// backupTimeout bounds the backup command from RunCommand to the end of
// its WatchCommand stream.
const backupTimeout = 2 * time.Minute

// backupTables are the seeded tables, compared after the restore.
var backupTables = []string{"customers", "orders"}

// TestFleetBackup runs a backup on the database host of a containerized
// fleet the way an engineer would, with grpcurl, then takes the archive
// off the host and restores it with the host machine's pg_restore into a
// fresh database, which must hold the same rows as the original.
func TestFleetBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end fleet on Docker; run without -short")
	}
	begin := time.Now()
	f, pg := startDatabaseFleet(t)
	agentID := f.waitDatabaseHost(t)
	db := f.hosts[0]
	t.Logf("control plane, PostgreSQL and %s ready in %s", db.name, time.Since(begin).Round(100*time.Millisecond))

	final, msgs, took := f.g.RunToEnd(t, fmt.Sprintf(
		`{"agent_ids": [%q], "spec": {"backup": {"database": %q}}, "reason": "e2e: nightly backup"}`,
		agentID, backupDatabase), backupTimeout)
	if final.State != "FLEET_COMMAND_STATE_SUCCEEDED" || len(final.Hosts) != 1 {
		t.Fatalf("backup ended %s with %d hosts: %+v", final.State, len(final.Hosts), final)
	}
	h := final.Hosts[0]
	if h.AgentID != agentID || h.State != "COMMAND_STATE_SUCCEEDED" || h.Result.Backup == nil {
		t.Fatalf("the host's part of the backup: %+v", h)
	}
	b := *h.Result.Backup
	checkBackupResult(t, b, pg)

	archive, manifest := copyBackup(t, f, db, b)
	checkManifest(t, manifest, b)
	entries := listArchive(t, pg, archive)
	if entries != b.VerifiedEntries {
		t.Errorf("pg_restore --list on this machine finds %d entries; the agent verified %d", entries, b.VerifiedEntries)
	}

	restoreTook := restoreInto(t, pg, archive, "restored")
	for _, table := range backupTables {
		count := "SELECT count(*) FROM " + table
		want, got := pg.QueryInt(t, backupDatabase, count), pg.QueryInt(t, "restored", count)
		if got != want || got == 0 {
			t.Errorf("restored %s has %d rows, the original %d", table, got, want)
		}
		checksum := fmt.Sprintf(`SELECT md5(string_agg(t::text, E'\n' ORDER BY t.id)) FROM %s t`, table)
		if want, got := pg.QueryString(t, backupDatabase, checksum), pg.QueryString(t, "restored", checksum); got != want {
			t.Errorf("restored %s's rows have checksum %s, the original's %s", table, got, want)
		}
	}

	progress := 0
	for _, m := range msgs {
		if m.Event != nil && m.Event.Event.Progress != nil {
			progress++
		}
	}
	t.Logf("backup of %s on %s: %d bytes, sha256 %s, %d entries; pg_dump %s, server %s", backupDatabase, db.name,
		b.SizeBytes, b.SHA256, b.VerifiedEntries, b.PgDumpVersion, b.ServerVersion)
	t.Logf("backup timing: %s from RunCommand to the end of WatchCommand (%d messages, %d with progress); %s on the agent (started %s, finished %s)",
		took.Round(time.Millisecond), len(msgs), progress, b.Duration,
		h.StartedAt.Format(time.RFC3339Nano), h.FinishedAt.Format(time.RFC3339Nano))
	t.Logf("restore: %s with pg_restore into a fresh database; %s hold the same rows and checksums as the original",
		restoreTook.Round(time.Millisecond), strings.Join(backupTables, " and "))
}

// checkBackupResult checks what the agent reported about the archive.
func checkBackupResult(t *testing.T, b grpcurl.BackupResult, pg *fixture.Postgres) {
	t.Helper()
	sum, err := hex.DecodeString(b.SHA256)
	switch {
	case b.Database != backupDatabase:
		t.Errorf("the result is of database %q, want %q", b.Database, backupDatabase)
	case path.Dir(b.Path) != backupDir || path.Dir(b.ManifestPath) != backupDir || b.Path == b.ManifestPath:
		t.Errorf("archive %s and manifest %s: want two files in %s, on the backup volume", b.Path, b.ManifestPath, backupDir)
	case b.SizeBytes == 0:
		t.Errorf("the result says the archive is empty")
	case err != nil || len(sum) != sha256.Size:
		t.Errorf("the result's sha256 %q is not a hex SHA-256", b.SHA256)
	case b.VerifiedEntries == 0:
		t.Errorf("the agent verified no entry of the archive")
	case b.Duration == "":
		t.Errorf("the result has no duration")
	}
	// The agent found the PostgreSQL programs the image added, and they
	// are this machine's, of the server's version.
	major := filepath.Base(filepath.Dir(pg.BinDir))
	if !strings.HasPrefix(b.PgDumpVersion, major+".") || !strings.HasPrefix(b.ServerVersion, major+".") {
		t.Errorf("pg_dump %q and server %q: want both of version %s, from %s", b.PgDumpVersion, b.ServerVersion, major, pg.BinDir)
	}
}

// copyBackup copies the archive and its manifest out of the database
// host's container, checks that the archive is the one the result
// describes, and returns the path of the archive on this machine and the
// manifest's content.
func copyBackup(t *testing.T, f *fleet, db host, b grpcurl.BackupResult) (string, []byte) {
	t.Helper()
	data, err := f.e.copyFile(db.agentID, b.Path)
	if err != nil {
		t.Fatalf("the archive the result names: %v", err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != b.SHA256 || uint64(len(data)) != b.SizeBytes {
		t.Fatalf("the archive copied off %s has %d bytes, sha256 %s; the result says %d bytes, sha256 %s",
			db.name, len(data), got, b.SizeBytes, b.SHA256)
	}
	manifest, err := f.e.copyFile(db.agentID, b.ManifestPath)
	if err != nil {
		t.Fatalf("the manifest the result names: %v", err)
	}
	archive := filepath.Join(t.TempDir(), path.Base(b.Path))
	if err := os.WriteFile(archive, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return archive, manifest
}

// checkManifest checks that the manifest written next to the archive
// agrees with the result.
func checkManifest(t *testing.T, data []byte, b grpcurl.BackupResult) {
	t.Helper()
	var m struct {
		Database  string `json:"database"`
		File      string `json:"file"`
		SizeBytes uint64 `json:"size_bytes"`
		SHA256    string `json:"sha256"`
		Entries   int    `json:"entries"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("manifest %s: %v\n%s", b.ManifestPath, err, data)
	}
	if m.Database != b.Database || m.File != path.Base(b.Path) || m.SizeBytes != b.SizeBytes || m.SHA256 != b.SHA256 || m.Entries != b.VerifiedEntries {
		t.Errorf("manifest %s disagrees with the result %+v:\n%s", b.ManifestPath, b, data)
	}
}

// listArchive lists the archive's table of contents with this machine's
// pg_restore, checks that it holds the seeded tables' data, and returns
// the number of entries (lines that are neither empty nor comments).
func listArchive(t *testing.T, pg *fixture.Postgres, archive string) int {
	t.Helper()
	out, err := exec.Command(pg.Bin("pg_restore"), "--list", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_restore --list %s: %v\n%s", archive, err, out)
	}
	entries := 0
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, ";") {
			entries++
		}
	}
	for _, table := range backupTables {
		if !strings.Contains(string(out), "TABLE DATA public "+table+" ") {
			t.Errorf("the archive has no data of table %s:\n%s", table, out)
		}
	}
	return entries
}

// restoreInto creates database name and restores the archive into it
// with this machine's pg_restore, stopping at the first error; it returns
// how long the restore took.
func restoreInto(t *testing.T, pg *fixture.Postgres, archive, name string) time.Duration {
	t.Helper()
	pg.Exec(t, "postgres", "CREATE DATABASE "+name)
	began := time.Now()
	out, err := exec.Command(pg.Bin("pg_restore"), "--no-owner", "--exit-on-error",
		"--dbname="+pg.AdminConninfo(name), archive).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_restore into the fresh database %s: %v\n%s", name, err, out)
	}
	return time.Since(began)
}
