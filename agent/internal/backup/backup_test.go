package backup

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/pgtest"
)

// backupEnv is an executor wired to a throwaway cluster, with what the
// tests need to check its work.
type backupEnv struct {
	cluster  *pgtest.Postgres
	exec     *Executor
	logs     *observer.ObservedLogs
	password string
	wrongPw  string
	passDir  string // parent of the executor's temporary passfiles

	mu     sync.Mutex
	errors []error // every error Execute returned, checked for the password
}

// TestBackupWithPostgres runs the executor against a real PostgreSQL
// server, started once for all its subtests.
func TestBackupWithPostgres(t *testing.T) {
	env := newBackupEnv(t)
	t.Run("backup succeeds and restores identically", env.testBackupRestores)
	t.Run("backups in the same second get distinct names", env.testSameSecond)
	t.Run("database not in the configuration is rejected", env.testNotConfigured)
	t.Run("database missing on the server fails and leaves nothing", env.testMissingDatabase)
	t.Run("wrong password fails without revealing it", env.testWrongPassword)
	t.Run("truncated archive fails verification", env.testTruncatedArchive)
	t.Run("cancel mid-backup leaves no archive", env.testCancelMidBackup)
	t.Run("expired deadline leaves no archive", env.testExpiredDeadline)
	t.Run("stats count connections", env.testStats)
	t.Run("password appears in no error and no log", env.testPasswordNeverShown)
}

func newBackupEnv(t *testing.T) *backupEnv {
	c := pgtest.Start(t)
	env := &backupEnv{
		cluster: c,
		// ':', '\' and '\'' exercise the passfile's and SQL's escaping.
		password: "s3cr:et\\pa'ss-" + randomHex(t),
		wrongPw:  "wrong:guess-" + randomHex(t),
		passDir:  t.TempDir(),
	}
	c.Exec(t, "postgres",
		fmt.Sprintf("CREATE ROLE flotilla_backup LOGIN PASSWORD '%s'", strings.ReplaceAll(env.password, "'", "''")),
		// The predefined role a backup user needs, and nothing more.
		"GRANT pg_read_all_data TO flotilla_backup",
		"CREATE DATABASE appdb",
		"CREATE DATABASE busydb",
	)
	seed(t, c, "appdb")
	seed(t, c, "busydb")

	secrets := t.TempDir()
	goodFile := writeSecret(t, secrets, "good", env.password+"\n")
	wrongFile := writeSecret(t, secrets, "wrong", env.wrongPw)
	remote := func(dbname, passwordFile string) Database {
		return Database{Host: "127.0.0.1", Port: c.Port, User: "flotilla_backup", DBName: dbname, PasswordFile: passwordFile}
	}
	core, logs := observer.New(zapcore.DebugLevel)
	e, err := New(Config{
		Directory: filepath.Join(t.TempDir(), "backups"),
		PgDump:    filepath.Join(c.BinDir, "pg_dump"),
		PgRestore: filepath.Join(c.BinDir, "pg_restore"),
		Databases: map[string]Database{
			"app":     remote("appdb", goodFile),
			"busy":    remote("busydb", goodFile),
			"ghost":   remote("", goodFile), // dbname defaults to "ghost", which does not exist
			"wrongpw": remote("appdb", wrongFile),
		},
	}, t.TempDir(), zap.New(core))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.tempDir = env.passDir
	env.exec, env.logs = e, logs
	return env
}

// seed creates two tables with a few thousand rows in dbname.
func seed(t *testing.T, c *pgtest.Postgres, dbname string) {
	c.Exec(t, dbname,
		`CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL)`,
		`INSERT INTO customers SELECT i, 'customer ' || i, md5(i::text) || '@example.com'
		 FROM generate_series(1, 3000) AS i`,
		`CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers,
		 amount numeric(10,2) NOT NULL, note text)`,
		`INSERT INTO orders SELECT i, 1 + i % 3000, (i * 7 % 100000) / 100.0, repeat(md5(i::text), 4)
		 FROM generate_series(1, 5000) AS i`,
	)
}

func (env *backupEnv) testBackupRestores(t *testing.T) {
	var reports []*flotillav1.CommandProgress
	res := env.mustBackup(t, "app", func(p *flotillav1.CommandProgress) { reports = append(reports, p) })

	b := res.GetBackup()
	data, err := os.ReadFile(b.GetPath())
	if err != nil {
		t.Fatalf("read the archive: %v", err)
	}
	sum := sha256.Sum256(data)
	m, err := ReadManifest(b.GetManifestPath())
	if err != nil {
		t.Fatal(err)
	}
	serverVersion := env.queryString(t, "appdb", "SHOW server_version")
	checks := []struct {
		what      string
		got, want any
	}{
		{"result database", b.GetDatabase(), "app"},
		{"archive directory", filepath.Dir(b.GetPath()), env.exec.Directory()},
		{"archive name", strings.HasPrefix(filepath.Base(b.GetPath()), "app-") && strings.HasSuffix(b.GetPath(), ".dump"), true},
		{"manifest path", b.GetManifestPath(), strings.TrimSuffix(b.GetPath(), ".dump") + ".json"},
		{"result size", b.GetSizeBytes(), uint64(len(data))},
		{"result sha256", b.GetSha256(), hex.EncodeToString(sum[:])},
		{"result server version", b.GetServerVersion(), serverVersion},
		{"result pg_dump version", b.GetPgDumpVersion() != "", true},
		{"result entries", b.GetVerifiedEntries() > 0, true},
		{"result started_at", b.GetStartedAt().IsValid(), true},
		{"result duration", b.GetDuration().AsDuration() > 0, true},
		{"manifest database", m.Database, "app"},
		{"manifest dbname", m.DBName, "appdb"},
		{"manifest file", m.File, filepath.Base(b.GetPath())},
		{"manifest format", m.Format, "custom"},
		{"manifest size", m.SizeBytes, uint64(len(data))},
		{"manifest sha256", m.SHA256, hex.EncodeToString(sum[:])},
		{"manifest started_at", m.StartedAt.Equal(b.GetStartedAt().AsTime()), true},
		{"manifest pg_dump version", m.PgDumpVersion, b.GetPgDumpVersion()},
		{"manifest server version", m.ServerVersion, serverVersion},
		{"manifest entries", uint32(m.Entries), b.GetVerifiedEntries()},
		{"manifest duration", m.Duration != "" && m.DurationSeconds > 0, true},
		{"archive mode", fileMode(t, b.GetPath()), os.FileMode(0o600)},
		{"manifest mode", fileMode(t, b.GetManifestPath()), os.FileMode(0o600)},
		{"first progress report", len(reports) > 0 && reports[0].GetCurrent() > 0, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	env.assertNoLeftovers(t)

	env.cluster.Exec(t, "postgres", "CREATE DATABASE restored")
	restore := exec.Command(env.exec.PgRestore(), "--no-owner", "--exit-on-error",
		"--dbname="+env.cluster.AdminConninfo("restored"), b.GetPath())
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("pg_restore into a fresh database: %v\n%s", err, out)
	}
	for _, table := range []string{"customers", "orders"} {
		want, got := env.fingerprint(t, "appdb", table), env.fingerprint(t, "restored", table)
		if got != want {
			t.Errorf("restored %s = %s, want %s", table, got, want)
		}
	}
}

func (env *backupEnv) testSameSecond(t *testing.T) {
	env.exec.clock = clockwork.NewFakeClockAt(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
	t.Cleanup(func() { env.exec.clock = clockwork.NewRealClock() })
	first := env.mustBackup(t, "app", nil).GetBackup().GetPath()
	second := env.mustBackup(t, "app", nil).GetBackup().GetPath()
	want := []string{"app-20310506T070809Z.dump", "app-20310506T070809Z-2.dump"}
	if got := []string{filepath.Base(first), filepath.Base(second)}; got[0] != want[0] || got[1] != want[1] {
		t.Errorf("archive names = %v, want %v", got, want)
	}
}

func (env *backupEnv) testNotConfigured(t *testing.T) {
	_, err := env.execute(context.Background(), "nope", nil)
	if !executor.IsRejection(err) || err.Error() != "database nope is not in backup.databases" {
		t.Fatalf("Execute(nope) = %v, want the rejection \"database nope is not in backup.databases\"", err)
	}
}

func (env *backupEnv) testMissingDatabase(t *testing.T) {
	before := env.archives(t)
	_, err := env.execute(context.Background(), "ghost", nil)
	if err == nil || executor.IsRejection(err) {
		t.Fatalf("Execute(ghost) = %v, want a failure", err)
	}
	for _, want := range []string{"connect to database ghost", `database "ghost" does not exist`, "partial archive was removed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if after := env.archives(t); len(after) != len(before) {
		t.Errorf("the backup directory went from %v to %v", before, after)
	}
	env.assertNoLeftovers(t)
}

func (env *backupEnv) testWrongPassword(t *testing.T) {
	_, err := env.execute(context.Background(), "wrongpw", nil)
	if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("Execute(wrongpw) = %v, want a password authentication failure", err)
	}
	// libpq names the passfile; the message names the configured one.
	if want := env.exec.cfg.Databases["wrongpw"].PasswordFile; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the configured password file %s", err, want)
	}
	env.assertNoLeftovers(t)
}

func (env *backupEnv) testTruncatedArchive(t *testing.T) {
	archive := env.mustBackup(t, "app", nil).GetBackup().GetPath()
	if _, _, err := VerifyArchive(context.Background(), env.exec.PgRestore(), archive); err != nil {
		t.Fatalf("VerifyArchive(complete archive) = %v", err)
	}
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cases := map[string][]byte{
		"half":          data[:len(data)/2],
		"last byte cut": data[:len(data)-1],
		"header only":   data[:64],
		"not a dump":    []byte("PGDMP? no, just text\n"),
		"empty":         nil,
	}
	for name, content := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".dump")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if n, _, err := VerifyArchive(context.Background(), env.exec.PgRestore(), path); err == nil {
			t.Errorf("VerifyArchive(%s) = %d entries and no error, want an error", name, n)
		}
	}
}

// testCancelMidBackup holds a lock that pg_dump waits for, so that the
// cancel surely arrives while pg_dump runs and the partial file exists.
func (env *backupEnv) testCancelMidBackup(t *testing.T) {
	locker := env.cluster.Connect(t, "busydb")
	ctx := context.Background()
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := env.execute(runCtx, "busy", nil)
		done <- err
	}()
	// pg_dump, and the session that reads the table statistics in the
	// same snapshot, wait for the lock.
	env.waitFor(t, "pg_dump to wait for the lock", func() bool {
		return env.backupSessions(t, "busydb", "Lock") >= 1
	})
	if partials, _ := filepath.Glob(filepath.Join(env.exec.Directory(), "busy-*.dump.partial")); len(partials) != 1 {
		t.Errorf("partial files while pg_dump runs = %v, want one", partials)
	}
	if _, err := env.execute(ctx, "busy", nil); !executor.IsRejection(err) {
		t.Errorf("a second backup of the same database = %v, want a rejection", err)
	}

	cancel()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Execute did not return within 30s of the cancel")
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "partial archive was removed") {
		t.Errorf("Execute after cancel = %v, want context.Canceled and the partial archive removed", err)
	}
	if got, _ := filepath.Glob(filepath.Join(env.exec.Directory(), "busy-*")); len(got) != 0 {
		t.Errorf("files left by the cancelled backup: %v", got)
	}
	env.assertNoLeftovers(t)
	// SIGTERM lets pg_dump cancel its query: the server session ends
	// although the lock it waited for is still held.
	env.waitFor(t, "the server to end pg_dump's session", func() bool {
		return env.backupSessions(t, "busydb", "") == 0
	})
}

func (env *backupEnv) testExpiredDeadline(t *testing.T) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := env.execute(ctx, "app", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Execute with an expired deadline = %v, want context.DeadlineExceeded", err)
	}
	env.assertNoLeftovers(t)
}

func (env *backupEnv) testStats(t *testing.T) {
	for range 3 {
		env.cluster.Connect(t, "appdb")
	}
	stats := env.exec.Stats(context.Background())
	got := map[string]int64{}
	for _, s := range stats {
		got[s.GetName()] = s.GetConnections()
		if s.GetWalArchiver() != nil {
			t.Errorf("Stats %s: archiver statistics %v from a server with archive_mode off", s.GetName(), s.GetWalArchiver())
		}
	}
	// Background workers may add a session now and then: at least three.
	if got["app"] < 3 {
		t.Errorf("Stats app connections = %d, want at least 3 (all: %v)", got["app"], got)
	}
	for _, absent := range []string{"ghost", "wrongpw"} {
		if _, ok := got[absent]; ok {
			t.Errorf("Stats reported %s, which cannot be read: %v", absent, got)
		}
	}
	if len(env.logs.FilterMessage("cannot read database connections").All()) == 0 {
		t.Error("the databases Stats skipped were not logged")
	}
}

func (env *backupEnv) testPasswordNeverShown(t *testing.T) {
	env.mu.Lock()
	defer env.mu.Unlock()
	for _, secret := range []string{env.password, env.wrongPw} {
		for _, err := range env.errors {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("an error shows a password: %v", err)
			}
		}
		for _, entry := range env.logs.All() {
			line := entry.Message + fmt.Sprint(entry.ContextMap())
			if strings.Contains(line, secret) {
				t.Errorf("a log entry shows a password: %s", line)
			}
		}
	}
	if len(env.errors) < 4 || env.logs.Len() == 0 {
		t.Errorf("checked %d errors and %d log entries; the other subtests should have produced more", len(env.errors), env.logs.Len())
	}
}

// execute runs a backup command and keeps its error for the password check.
func (env *backupEnv) execute(ctx context.Context, database string, progress executor.Progress) (*flotillav1.CommandResult, error) {
	spec := &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: database}}}
	res, err := env.exec.Execute(ctx, spec, progress)
	if err != nil {
		env.mu.Lock()
		env.errors = append(env.errors, err)
		env.mu.Unlock()
	}
	return res, err
}

func (env *backupEnv) mustBackup(t *testing.T, database string, progress executor.Progress) *flotillav1.CommandResult {
	t.Helper()
	res, err := env.execute(context.Background(), database, progress)
	if err != nil {
		t.Fatalf("backup of %s: %v", database, err)
	}
	return res
}

// assertNoLeftovers checks that no partial file and no passfile remain.
func (env *backupEnv) assertNoLeftovers(t *testing.T) {
	t.Helper()
	for _, pattern := range []string{
		filepath.Join(env.exec.Directory(), "*.partial"),
		filepath.Join(env.exec.Directory(), "*.tmp"),
		filepath.Join(env.passDir, "*"),
	} {
		if got, _ := filepath.Glob(pattern); len(got) != 0 {
			t.Errorf("leftover files: %v", got)
		}
	}
}

// archives lists the archives and manifests in the backup directory.
func (env *backupEnv) archives(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, pattern := range []string{"*.dump", "*.json"} {
		got, _ := filepath.Glob(filepath.Join(env.exec.Directory(), pattern))
		names = append(names, got...)
	}
	return names
}

// fingerprint is the row count and an MD5 of every row, in key order.
func (env *backupEnv) fingerprint(t *testing.T, dbname, table string) string {
	t.Helper()
	return env.queryString(t, dbname, fmt.Sprintf(
		`SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY id)) FROM %s AS t`, table))
}

func (env *backupEnv) queryString(t *testing.T, dbname, query string) string {
	t.Helper()
	conn := env.cluster.Connect(t, dbname)
	var s string
	if err := conn.QueryRow(context.Background(), query).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

// backupSessions counts the executor's sessions on dbname, only those
// waiting on waitEventType when it is not empty.
func (env *backupEnv) backupSessions(t *testing.T, dbname, waitEventType string) int {
	t.Helper()
	conn, err := env.cluster.Dial(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = $2 AND ($3 = '' OR wait_event_type = $3)`,
		applicationName, dbname, waitEventType).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond for at most 20 seconds.
func (env *backupEnv) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

func writeSecret(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
