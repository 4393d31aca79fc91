package backup

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap/zaptest"

	"flotilla.dev/agent/internal/backup/objstore"
	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/agent/internal/s3test"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/pgtest"
)

// destEnv is an executor with superuser access to a throwaway cluster
// (restores create databases) and a real S3 server.
type destEnv struct {
	cluster *pgtest.Postgres
	s3      *s3test.Server
	exec    *Executor
	dest    *flotillav1.BackupDestination
}

// TestBackupKindsWithPostgres runs dumps to S3, restores, drills and
// prunes against a real PostgreSQL server and a real S3 server.
func TestBackupKindsWithPostgres(t *testing.T) {
	c := pgtest.Start(t)
	env := &destEnv{cluster: c, s3: s3test.Start(t, "backups")}
	c.Exec(t, "postgres", "CREATE DATABASE appdb", "CREATE DATABASE emptydb")
	seed(t, c, "appdb")
	c.Exec(t, "appdb", `CREATE TABLE events (id int PRIMARY KEY, at timestamptz NOT NULL, due timestamptz)`,
		`INSERT INTO events VALUES (1, now() - interval '1 hour', now() + interval '1 year'), (2, now() - interval '5 minutes', NULL)`)
	admin := func(dbname string) Database {
		return Database{Host: c.SocketDir, Port: c.Port, User: "postgres", DBName: dbname, SSLMode: "disable"}
	}
	// Its own scratch parent, which the postgres OS user can enter: New
	// stops the scratch servers it finds there, and another package's
	// executor must not find this test's.
	scratch, err := os.MkdirTemp("", "flotilla-drills-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(scratch) })
	if err := os.Chmod(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{
		Directory:        filepath.Join(t.TempDir(), "backups"),
		ScratchDirectory: scratch,
		PgDump:           c.Bin("pg_dump"), PgRestore: c.Bin("pg_restore"), PostgresBinDir: c.BinDir,
		S3:        env.s3.Config(),
		Databases: map[string]Database{"app": admin("appdb"), "empty": admin("emptydb")},
	}, t.TempDir(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	env.exec = e
	env.dest = &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: "backups", Prefix: "prod/db-1"}}}
	t.Run("dump to S3 is read back and catalogued", env.testDumpToS3)
	t.Run("a database without tables backs up and restores", env.testEmptyDatabase)
	t.Run("restore into a new database, never over an existing one unless replace", env.testRestoreDump)
	t.Run("a corrupted object fails the restore and the drill", env.testCorruptedObject)
	t.Run("drill restores into a scratch server and measures RPO and RTO", env.testDrill)
	t.Run("drill fails when the restored copy does not match the manifest", env.testDrillMismatch)
	t.Run("a destination that refuses writes fails the backup and catalogues nothing", env.testRefusingDestination)
	t.Run("prune keeps by the rules and the newest, dry run deletes nothing", env.testPrune)
	t.Run("databases not in backup.databases are rejected for every kind", env.testNotConfiguredKinds)
}

func (env *destEnv) run(t *testing.T, spec *flotillav1.CommandSpec) (*flotillav1.CommandResult, error) {
	t.Helper()
	return env.exec.Execute(context.Background(), spec, nil)
}

func (env *destEnv) backup(t *testing.T, database string, dest *flotillav1.BackupDestination) *flotillav1.BackupResult {
	t.Helper()
	res, err := env.run(t, &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: database, Destination: dest}}})
	if err != nil {
		t.Fatalf("backup of %s: %v", database, err)
	}
	return res.GetBackup()
}

func restoreSpec(database, backup, newDB string, replace bool, dest *flotillav1.BackupDestination) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{
		Database: database, Backup: backup, Destination: dest,
		Target: &flotillav1.RestoreCommand_Dump{Dump: &flotillav1.DumpRestoreTarget{NewDatabase: newDB, Replace: replace}}}}}
}

func drillSpec(database, backup string, dest *flotillav1.BackupDestination) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drill{Drill: &flotillav1.DrillCommand{Database: database, Backup: backup, Destination: dest}}}
}

// objectFile is the file behind an object of the S3 server.
func (env *destEnv) objectFile(key string) string {
	return filepath.Join(env.s3.Root, "backups", "prod", "db-1", key)
}

func (env *destEnv) testDumpToS3(t *testing.T) {
	b := env.backup(t, "app", env.dest)
	if !b.GetVerified() || b.GetPath() != "" || b.GetType() != flotillav1.BackupType_BACKUP_TYPE_DUMP ||
		b.GetDestinationUri() != "s3://backups/prod/db-1/"+b.GetName()+".dump" || b.GetFinishedAt() == nil {
		t.Fatalf("result = %v", b)
	}
	d, err := objstore.DigestFile(env.objectFile(b.GetName() + ".dump"))
	if err != nil || d.SHA256 != b.GetSha256() || d.Size != int64(b.GetSizeBytes()) {
		t.Fatalf("stored object = %+v, %v; result says %d bytes, %s", d, err, b.GetSizeBytes(), b.GetSha256())
	}
	var m Manifest
	data, err := os.ReadFile(env.objectFile(b.GetName() + ".json"))
	if err != nil || json.Unmarshal(data, &m) != nil {
		t.Fatalf("manifest: %v", err)
	}
	rows := map[string]int64{}
	for _, tb := range m.Tables {
		rows[tb.Name()] = tb.Rows
	}
	if rows["public.customers"] != 3000 || rows["public.orders"] != 5000 || rows["public.events"] != 2 || m.URI != b.GetDestinationUri() {
		t.Errorf("manifest tables = %v, uri %s", rows, m.URI)
	}
	// The working file went away; nothing is left in the local directory.
	if left, _ := filepath.Glob(filepath.Join(env.exec.Directory(), "app-*")); len(left) != 0 {
		t.Errorf("local leftovers after an S3 backup: %v", left)
	}
}

func (env *destEnv) testEmptyDatabase(t *testing.T) {
	for _, dest := range []*flotillav1.BackupDestination{nil, env.dest} {
		b := env.backup(t, "empty", dest)
		if !b.GetVerified() || b.GetVerifiedEntries() != 0 {
			t.Fatalf("backup of an empty database = %v", b)
		}
		if _, err := env.run(t, restoreSpec("empty", b.GetName(), "empty_restored", true, dest)); err != nil {
			t.Fatalf("restore of an empty database: %v", err)
		}
		if n := env.cluster.QueryInt(t, "empty_restored", "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"); n != 0 {
			t.Errorf("restored empty database has %d tables", n)
		}
		res, err := env.run(t, drillSpec("empty", b.GetName(), dest))
		if err != nil || !res.GetDrill().GetSuccess() {
			t.Fatalf("drill of an empty database = %v, %v", res, err)
		}
	}
}

func (env *destEnv) testRestoreDump(t *testing.T) {
	b := env.backup(t, "app", env.dest)
	res, err := env.run(t, restoreSpec("app", b.GetName(), "app_copy", false, env.dest))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if r := res.GetRestore(); r.GetNewDatabase() != "app_copy" || r.GetBackup().GetName() != b.GetName() || r.GetReplaced() {
		t.Errorf("result = %v", r)
	}
	for _, q := range []string{"SELECT count(*) FROM customers", "SELECT count(*) FROM orders"} {
		if got, want := env.cluster.QueryInt(t, "app_copy", q), env.cluster.QueryInt(t, "appdb", q); got != want {
			t.Errorf("%s: restored %d, live %d", q, got, want)
		}
	}
	// Over an existing database (the live one included): refused.
	for _, target := range []string{"app_copy", "appdb"} {
		_, err = env.run(t, restoreSpec("app", "", target, false, env.dest))
		if !errors.Is(err, errDatabaseExists) {
			t.Fatalf("restore over %s without replace = %v, want a refusal", target, err)
		}
	}
	env.cluster.Exec(t, "app_copy", "DELETE FROM orders")
	if _, err := env.run(t, restoreSpec("app", "", "app_copy", true, env.dest)); err != nil {
		t.Fatalf("restore with replace: %v", err)
	}
	if n := env.cluster.QueryInt(t, "app_copy", "SELECT count(*) FROM orders"); n != 5000 {
		t.Errorf("after replace: %d orders, want 5000", n)
	}
}

func (env *destEnv) testCorruptedObject(t *testing.T) {
	b := env.backup(t, "app", env.dest)
	path := env.objectFile(b.GetName() + ".dump")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = env.run(t, restoreSpec("app", b.GetName(), "app_corrupt", false, env.dest))
	if !errors.Is(err, objstore.ErrMismatch) || !strings.Contains(err.Error(), b.GetSha256()) {
		t.Fatalf("restore of a corrupted object = %v, want a checksum mismatch", err)
	}
	if n := env.cluster.QueryInt(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'app_corrupt'"); n != 0 {
		t.Error("a restore of a corrupted object created its database")
	}
	res, err := env.run(t, drillSpec("app", b.GetName(), env.dest))
	if err == nil || res.GetDrill().GetSuccess() || !strings.Contains(res.GetDrill().GetFailure(), "SHA-256") {
		t.Fatalf("drill of a corrupted object = %v, %v; want a failed drill naming the checksum", res, err)
	}
}

func (env *destEnv) testDrill(t *testing.T) {
	before := time.Now()
	b := env.backup(t, "app", env.dest)
	res, err := env.run(t, drillSpec("app", "", env.dest))
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	d := res.GetDrill()
	if !d.GetSuccess() || d.GetBackup().GetName() != b.GetName() || len(d.GetTables()) != 3 || d.GetRto().AsDuration() <= 0 {
		t.Fatalf("drill = %v", d)
	}
	for _, tc := range d.GetTables() {
		if !tc.GetChecksumOk() || tc.GetExpectedRows() != tc.GetRestoredRows() {
			t.Errorf("table check %v", tc)
		}
	}
	// The newest row is the event of 5 minutes ago; the one due next year
	// is not a write and is ignored.
	newest := d.GetNewestRowAt().AsTime()
	if newest.After(before) || newest.Before(before.Add(-time.Hour)) || d.GetRpo().AsDuration() < 5*time.Minute {
		t.Errorf("newest row %v, rpo %v; want about 5 minutes before %v", newest, d.GetRpo().AsDuration(), before)
	}
	// The live database was never touched: no session of the drill's database on it.
	if n := env.cluster.QueryInt(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'flotilla_drill'"); n != 0 {
		t.Error("the drill created its database on the live server")
	}
}

func (env *destEnv) testDrillMismatch(t *testing.T) {
	b := env.backup(t, "app", nil)
	path := filepath.Join(env.exec.Directory(), b.GetName()+".json")
	m, err := ReadManifest(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Tables {
		if m.Tables[i].Table == "orders" {
			m.Tables[i].Rows++
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := writeManifest(path, m); err != nil {
		t.Fatal(err)
	}
	res, err := env.run(t, drillSpec("app", b.GetName(), nil))
	d := res.GetDrill()
	if err == nil || d.GetSuccess() || !strings.Contains(d.GetFailure(), "public.orders has 5000 rows, the manifest 5001") {
		t.Fatalf("drill against a wrong manifest = %v, %v", d, err)
	}
}

func (env *destEnv) testRefusingDestination(t *testing.T) {
	before, _ := env.s3.Store(t, "backups", "prod/db-1").List(context.Background(), "")
	cfg := env.exec.cfg
	cfg.S3.SecretAccessKeyFile = writeSecret(t, t.TempDir(), "bad", "not-the-secret")
	bad, err := New(cfg, t.TempDir(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Execute(context.Background(), &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{
		Backup: &flotillav1.BackupCommand{Database: "app", Destination: env.dest}}}, nil)
	if err == nil || !strings.Contains(err.Error(), env.s3.Endpoint) {
		t.Fatalf("backup to a refusing destination = %v, want a failure naming it", err)
	}
	after, _ := env.s3.Store(t, "backups", "prod/db-1").List(context.Background(), "")
	if len(after) != len(before) {
		t.Errorf("objects went from %d to %d", len(before), len(after))
	}
	if left, _ := filepath.Glob(filepath.Join(bad.Directory(), "*.partial")); len(left) != 0 {
		t.Errorf("local leftovers: %v", left)
	}
	// A bucket that does not exist refuses too.
	missing := &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: "no-such-bucket"}}}
	if _, err := env.run(t, &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: "app", Destination: missing}}}); err == nil {
		t.Fatal("backup into a missing bucket succeeded")
	}
}

func (env *destEnv) testPrune(t *testing.T) {
	dest := &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: "backups", Prefix: "prune"}}}
	// Eight daily backups at 02:00 UTC, the clock set for each.
	start := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	var names []string
	for i := range 8 {
		env.exec.clock = clockwork.NewFakeClockAt(start.AddDate(0, 0, i))
		names = append(names, env.backup(t, "empty", dest).GetName())
	}
	env.exec.clock = clockwork.NewRealClock()
	prune := func(dryRun bool) *flotillav1.PruneResult {
		res, err := env.run(t, &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Prune{Prune: &flotillav1.PruneCommand{
			Database: "empty", Destination: dest, DryRun: dryRun,
			Retention: &flotillav1.RetentionRules{KeepLast: 2, KeepWeekly: 2}}}})
		if err != nil {
			t.Fatalf("prune: %v", err)
		}
		return res.GetPrune()
	}
	names5 := func(bs []*flotillav1.StoredBackup) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.GetName())
		}
		return out
	}
	// 2026-03-01 is a Sunday (ISO week 9); 03-02..03-08 are week 10.
	wantKept := []string{names[7], names[6], names[0]}
	dry := prune(true)
	if got := names5(dry.GetKept()); strings.Join(got, ",") != strings.Join(wantKept, ",") || len(dry.GetDeleted()) != 5 || !dry.GetDryRun() {
		t.Fatalf("dry run: kept %v deleted %v; want kept %v", got, names5(dry.GetDeleted()), wantKept)
	}
	store := env.s3.Store(t, "backups", "prune")
	for _, n := range names {
		if _, err := store.Stat(context.Background(), n+".dump"); err != nil {
			t.Fatalf("the dry run deleted %s: %v", n, err)
		}
	}
	real := prune(false)
	if len(real.GetDeleted()) != 5 || real.GetBytesFreed() == 0 {
		t.Fatalf("prune = %v", real)
	}
	for _, d := range real.GetDeleted() {
		for _, key := range []string{d.GetName() + ".dump", d.GetName() + ".json"} {
			if _, err := store.Stat(context.Background(), key); !errors.Is(err, objstore.ErrNotFound) {
				t.Errorf("%s still exists after the prune: %v", key, err)
			}
		}
	}
	if again := prune(false); len(again.GetDeleted()) != 0 || len(again.GetKept()) != 3 {
		t.Errorf("a second prune = %v, want nothing more deleted", again)
	}
}

func (env *destEnv) testNotConfiguredKinds(t *testing.T) {
	for _, spec := range []*flotillav1.CommandSpec{
		{Kind: &flotillav1.CommandSpec_BaseBackup{BaseBackup: &flotillav1.BaseBackupCommand{Database: "billing"}}},
		{Kind: &flotillav1.CommandSpec_Prune{Prune: &flotillav1.PruneCommand{Database: "billing", Retention: &flotillav1.RetentionRules{KeepLast: 1}}}},
		restoreSpec("billing", "", "x", false, nil),
		drillSpec("billing", "", nil),
	} {
		_, err := env.run(t, spec)
		if !executor.IsRejection(err) || err.Error() != "database billing is not in backup.databases" {
			t.Errorf("%v: %v, want a rejection", spec, err)
		}
	}
}
