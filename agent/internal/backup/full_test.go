package backup

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"flotilla.dev/agent/internal/backup/objstore"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/pgtest"
)

// mountSmallFS mounts a tmpfs of mib MiB on a new directory, unmounted when
// t ends. Mounting needs root (CI runs as root: there a refusal fails the
// test under FLOTILLA_E2E=1); elsewhere the test skips.
func mountSmallFS(t *testing.T, mib int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir, err := os.MkdirTemp("", "flotilla-full-")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(mib)+"m,mode=0700", "flotilla-test-full", dir).CombinedOutput()
	if err != nil {
		_ = os.Remove(dir)
		pgtest.Require(t, "cannot mount a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			return
		}
		_ = os.Remove(dir)
	})
	return dir
}

// TestDestinationFull: the backup directory on a 4 MiB filesystem holds a
// small database's backup; once the database outgrows it, a backup fails
// naming ENOSPC and the directory, leaves no partial file and catalogues
// nothing new, and the earlier backup stays intact. wal-push of a segment
// that does not fit fails the same way and leaves no object.
func TestDestinationFull(t *testing.T) {
	dir := mountSmallFS(t, 4)
	c := pgtest.Start(t)
	c.Exec(t, "postgres", "CREATE DATABASE fulldb")
	c.Exec(t, "fulldb", "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)",
		"INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 100) AS i")
	e, err := New(Config{
		Directory: filepath.Join(dir, "backups"),
		PgDump:    filepath.Join(c.BinDir, "pg_dump"), PgRestore: filepath.Join(c.BinDir, "pg_restore"),
		Databases: map[string]Database{"app": {Host: c.SocketDir, Port: c.Port, User: "postgres", DBName: "fulldb"}},
	}, t.TempDir(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	backup := func() (*flotillav1.BackupResult, error) {
		res, err := e.Execute(context.Background(), &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{
			Backup: &flotillav1.BackupCommand{Database: "app"}}}, nil)
		return res.GetBackup(), err
	}
	first, err := backup()
	if err != nil {
		t.Fatalf("backup of the small database: %v", err)
	}
	// About 13 MB of hex text: some 7 MB compressed, more than the filesystem.
	c.Exec(t, "fulldb", `INSERT INTO notes SELECT i, md5(i::text) || md5((i * 3)::text) || md5((i * 7)::text) || md5((i * 11)::text)
		FROM generate_series(101, 100100) AS i`)
	_, err = backup()
	var full *objstore.FullError
	if err == nil || !errors.As(err, &full) || !strings.Contains(err.Error(), "ENOSPC") || !strings.Contains(err.Error(), e.Directory()) {
		t.Fatalf("backup into a full directory = %v, want a failure naming ENOSPC and %s", err, e.Directory())
	}
	entries, _ := os.ReadDir(e.Directory())
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	if want := []string{first.GetName() + archiveSuffix, first.GetName() + manifestSuffix}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("backup directory after the failure = %v, want only the first backup %v", names, want)
	}
	store, _ := objstore.NewLocal(e.Directory())
	backups, _, err := catalog(context.Background(), store, "app")
	if err != nil || len(backups) != 1 || backups[0].Name != first.GetName() {
		t.Errorf("catalog after the failure = %v, %v; want the first backup alone", backups, err)
	}
	if err := objstore.Verify(context.Background(), store, first.GetName()+archiveSuffix,
		objstore.Digest{Size: int64(first.GetSizeBytes()), SHA256: first.GetSha256()}); err != nil {
		t.Errorf("the first backup after the failure: %v", err)
	}

	// A 16 MiB segment into the same full filesystem.
	segment := filepath.Join(t.TempDir(), "000000010000000000000001")
	if err := os.WriteFile(segment, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	walStore, _ := objstore.NewLocal(filepath.Join(dir, "wal-archive"))
	err = WALPush(context.Background(), walStore, "app", segment, filepath.Base(segment))
	if err == nil || !errors.As(err, &full) || !strings.Contains(err.Error(), "ENOSPC") {
		t.Fatalf("wal-push into a full destination = %v, want a failure naming ENOSPC", err)
	}
	left, _ := walStore.List(context.Background(), "")
	var hidden []string
	_ = filepath.WalkDir(walStore.Root(), func(path string, d os.DirEntry, _ error) error {
		if d != nil && !d.IsDir() {
			hidden = append(hidden, path)
		}
		return nil
	})
	if len(left) != 0 || len(hidden) != 0 {
		t.Errorf("after a failed wal-push: objects %v, files %v; want none", left, hidden)
	}
}
