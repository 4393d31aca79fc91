package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"flotilla.dev/agent/internal/backup"
	"flotilla.dev/agent/internal/s3test"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/pgtest"
)

// walFixture is a PostgreSQL 15 cluster whose archive_command is the
// flotilla-agent binary (built by the test), archiving to a real S3 server.
type walFixture struct {
	bin, cfgPath string
	cluster      *pgtest.Postgres
	s3           *s3test.Server
	dest         *flotillav1.BackupDestination
	exec         *backup.Executor
	shared       string // a directory the postgres OS user can enter
}

// sharedDir is a directory outside the test's private temporary
// directory, enterable by the postgres OS user when the test runs as root.
func sharedDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "flotilla-wal-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// toPostgres gives path to the postgres OS user when the test runs as root.
func toPostgres(t testing.TB, path string) {
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		pgtest.Require(t, "no postgres OS user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func buildAgent(t testing.TB, dir string) string {
	bin := filepath.Join(dir, "flotilla-agent")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func newWALFixture(t testing.TB, settings ...string) *walFixture {
	if pgtest.NewestBinary("pg_basebackup") == "" {
		pgtest.Require(t, "no PostgreSQL server binaries in %s", pgtest.LibDir)
	}
	f := &walFixture{shared: sharedDir(t), s3: s3test.Start(t, "backups")}
	f.bin = buildAgent(t, f.shared)
	secret := filepath.Join(f.shared, "s3-secret")
	if err := os.WriteFile(secret, []byte(s3test.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	toPostgres(t, secret)
	f.cfgPath = filepath.Join(f.shared, "agent.yaml")
	archive := fmt.Sprintf("archive_command=%s wal-push -config %s -database app %%p %%f", f.bin, f.cfgPath)
	f.cluster = pgtest.StartWith(t, pgtest.Options{Settings: append([]string{"wal_level=replica", "archive_mode=on", archive}, settings...)})
	cfgYAML := fmt.Sprintf(`state_dir: %s
backup:
  s3:
    endpoint: %s
    access_key_id: %s
    secret_access_key_file: %s
    insecure: true
  databases:
    app:
      host: %s
      port: %d
      user: postgres
      dbname: appdb
      wal_destination: s3://backups/wal-archive
`, filepath.Join(f.shared, "state"), f.s3.Endpoint, s3test.AccessKey, secret, f.cluster.SocketDir, f.cluster.Port)
	if err := os.WriteFile(f.cfgPath, []byte(cfgYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadWALConfig(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Backup.PostgresBinDir = f.cluster.BinDir
	if f.exec, err = backup.New(cfg.Backup, t.TempDir(), zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	f.exec.SetWALFetch(f.bin, f.cfgPath)
	f.dest = &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: "backups", Prefix: "base"}}}
	f.cluster.Exec(t, "postgres", "CREATE DATABASE appdb")
	return f
}

// serverTime is the server's clock now.
func (f *walFixture) serverTime(t testing.TB) time.Time {
	s := f.cluster.QueryString(t, "appdb", "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// archiveAll switches WAL and waits until the segment is archived.
func (f *walFixture) archiveAll(t testing.TB) {
	seg := f.cluster.QueryString(t, "appdb", "SELECT pg_walfile_name(pg_switch_wal())")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		last := f.cluster.QueryString(t, "appdb", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		if last >= seg {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s not archived after 2 minutes (last archived %q); server log:\n%s", seg, last, f.cluster.ServerLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPointInTimeRestore: rows written at T1, T2 and T3 with WAL archived
// by wal-push to S3; a restore to a time between T2 and T3 has exactly the
// T1 and T2 rows, a restore to "latest" all three.
func TestPointInTimeRestore(t *testing.T) {
	f := newWALFixture(t)
	ctx := context.Background()
	f.cluster.Exec(t, "appdb", "CREATE TABLE events (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
	res, err := f.exec.Execute(ctx, &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_BaseBackup{
		BaseBackup: &flotillav1.BaseBackupCommand{Database: "app", Destination: f.dest}}}, nil)
	if err != nil {
		t.Fatalf("base backup: %v", err)
	}
	base := res.GetBackup()
	if !base.GetVerified() || base.GetStartWal() == "" || !strings.HasPrefix(base.GetDestinationUri(), "s3://backups/base/app-") {
		t.Fatalf("base backup result = %v", base)
	}
	f.cluster.Exec(t, "appdb", "INSERT INTO events (id) VALUES (1)")
	f.cluster.Exec(t, "appdb", "INSERT INTO events (id) VALUES (2)")
	target := f.serverTime(t)
	for !f.serverTime(t).After(target.Add(time.Millisecond)) {
		time.Sleep(time.Millisecond)
	}
	f.cluster.Exec(t, "appdb", "INSERT INTO events (id) VALUES (3)")
	f.archiveAll(t)
	// The heartbeat's statistics carry pg_stat_archiver.
	stats := f.exec.Stats(ctx)
	if len(stats) != 1 || stats[0].GetWalArchiver() == nil {
		t.Fatalf("Stats = %v, want the archiver's statistics", stats)
	}
	if a := stats[0].GetWalArchiver(); a.GetArchivedCount() == 0 || a.GetLastArchivedWal() == "" ||
		a.GetLastArchivedAt() == nil || a.GetTimeline() != 1 || a.GetFailedCount() != 0 {
		t.Errorf("archiver statistics = %v", a)
	}

	// The target carries an explicit zone other than UTC.
	zone := time.FixedZone("", 5*3600+30*60)
	for _, tt := range []struct {
		target string
		want   string
	}{
		{target.In(zone).Format(time.RFC3339Nano), "1,2"},
		{"latest", "1,2,3"},
	} {
		t.Run(tt.target, func(t *testing.T) {
			got, timeline := f.restoreAndQuery(t, tt.target)
			if got != tt.want {
				t.Errorf("restored rows = %s, want %s", got, tt.want)
			}
			if timeline < 2 {
				t.Errorf("restored server's timeline = %d, want a new one (>= 2) after promotion", timeline)
			}
		})
	}
}

// restoreAndQuery restores to target into a new data directory and
// returns the restored server's event IDs and timeline.
func (f *walFixture) restoreAndQuery(t *testing.T, target string) (string, uint32) {
	dataDir := filepath.Join(sharedDir(t), "restored")
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.exec.Execute(context.Background(), &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{
		Database: "app", Destination: f.dest,
		Target: &flotillav1.RestoreCommand_PointInTime{PointInTime: &flotillav1.PointInTimeTarget{
			TargetTime: target, DataDirectory: dataDir, Port: uint32(port)}},
	}}}, nil)
	t.Cleanup(func() { stopRestored(f, dataDir) })
	if err != nil {
		t.Fatalf("restore to %s: %v", target, err)
	}
	r := res.GetRestore()
	if r.GetPort() != uint32(port) || r.GetDataDirectory() != dataDir || r.GetWalSegmentsRestored() == 0 {
		t.Errorf("restore result = %v", r)
	}
	// The history of the promoted timeline ends with this restore's switch
	// off the timeline it recovered along.
	if h := r.GetTimelineHistory(); len(h) == 0 || h[len(h)-1].GetTimeline() != r.GetTimeline()-1 ||
		h[len(h)-1].GetSwitchLsn() == "" || h[len(h)-1].GetReason() == "" {
		t.Errorf("timeline history = %v, want it to end with the switch from timeline %d", h, r.GetTimeline()-1)
	}
	out, err := exec.Command(filepath.Join(f.cluster.BinDir, "psql"), "-XAt", "-h", dataDir, "-p", strconv.Itoa(port), "-U", "postgres",
		"-d", "appdb", "-c", "SELECT string_agg(id::text, ',' ORDER BY id) FROM events").CombinedOutput()
	if err != nil {
		t.Fatalf("query the restored server: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out)), r.GetTimeline()
}

// runAgent runs the built binary and returns its exit status and stderr.
func runAgent(t *testing.T, bin string, args ...string) (int, string) {
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}

// TestWALPushFetch drives wal-push and wal-fetch as PostgreSQL would,
// against a real S3 server: a push is idempotent for the same content,
// refused for a different one; a fetch checks the checksum, so a flipped
// byte in the stored object fails it; a missing segment exits non-zero.
func TestWALPushFetch(t *testing.T) {
	srv := s3test.Start(t, "backups")
	local := t.TempDir()
	for _, tt := range []struct {
		name, destination, stored string
	}{
		{"s3", "s3://backups/wal", filepath.Join(srv.Root, "backups", "wal", "wal", "app")},
		{"local", "file://" + local, filepath.Join(local, "wal", "app")},
	} {
		t.Run(tt.name, func(t *testing.T) { testWALPushFetch(t, srv, tt.destination, tt.stored) })
	}
}

func testWALPushFetch(t *testing.T, srv *s3test.Server, destination, storedDir string) {
	dir := sharedDir(t)
	bin := buildAgent(t, dir)
	cfgPath := filepath.Join(dir, "agent.yaml")
	cfg := fmt.Sprintf("backup:\n  s3: {endpoint: %q, access_key_id: %q, secret_access_key_file: %q, insecure: true}\n"+
		"  databases:\n    app: {wal_destination: %q}\n", srv.Endpoint, s3test.AccessKey, srv.SecretFile, destination)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const seg = "000000010000000000000007"
	segment := filepath.Join(dir, seg)
	content := []byte(strings.Repeat("wal record ", 100_000))
	if err := os.WriteFile(segment, content, 0o600); err != nil {
		t.Fatal(err)
	}
	push := func() (int, string) {
		return runAgent(t, bin, "wal-push", "-config", cfgPath, "-database", "app", segment, seg)
	}
	fetch := func(to string) (int, string) {
		return runAgent(t, bin, "wal-fetch", "-config", cfgPath, "-database", "app", seg, to)
	}
	if code, stderr := push(); code != 0 {
		t.Fatalf("wal-push = %d: %s", code, stderr)
	}
	if code, stderr := push(); code != 0 {
		t.Fatalf("wal-push of the same segment again (a PostgreSQL retry) = %d: %s", code, stderr)
	}
	fetched := filepath.Join(dir, "RECOVERYXLOG")
	if code, stderr := fetch(fetched); code != 0 {
		t.Fatalf("wal-fetch = %d: %s", code, stderr)
	}
	if got, _ := os.ReadFile(fetched); string(got) != string(content) {
		t.Fatal("wal-fetch wrote different content")
	}
	// The same name with other content is refused: never overwritten.
	if err := os.WriteFile(segment, []byte("another cluster's segment"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stderr := push(); code == 0 || !strings.Contains(stderr, "already archived with different content") {
		t.Fatalf("wal-push of different content = %d, %q; want a refusal", code, stderr)
	}
	// A flipped byte in the stored object: wal-fetch fails and writes nothing.
	stored := filepath.Join(storedDir, seg)
	b, err := os.ReadFile(stored)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x40
	if err := os.WriteFile(stored, b, 0o600); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt")
	if code, stderr := fetch(corrupt); code == 0 || !strings.Contains(stderr, "SHA-256") {
		t.Fatalf("wal-fetch of a corrupted object = %d, %q; want a checksum failure", code, stderr)
	}
	if _, err := os.Stat(corrupt); err == nil {
		t.Error("wal-fetch of a corrupted object left a file for PostgreSQL")
	}
	code, stderr := runAgent(t, bin, "wal-fetch", "-config", cfgPath, "-database", "app", "000000010000000000000099", corrupt)
	if code == 0 || !strings.Contains(stderr, "not in the WAL archive") {
		t.Errorf("wal-fetch of a missing segment = %d, %q", code, stderr)
	}
	for _, args := range [][]string{
		{"wal-push", "-config", cfgPath, "-database", "nope", segment, seg},
		{"wal-push", "-config", cfgPath, "-database", "app", segment, "../../etc/passwd"},
		{"wal-push", "-config", cfgPath, segment, seg},
	} {
		if code, _ := runAgent(t, bin, args...); code == 0 {
			t.Errorf("flotilla-agent %q exited 0, want a refusal", args)
		}
	}
}

// stopRestored stops a restored server, as the postgres OS user when the
// test runs as root.
func stopRestored(f *walFixture, dataDir string) {
	pgCtl := filepath.Join(f.cluster.BinDir, "pg_ctl")
	if os.Geteuid() == 0 {
		_ = exec.Command("su", "postgres", "-s", "/bin/sh", "-c", pgCtl+" -D '"+dataDir+"' stop -m immediate").Run()
		return
	}
	_ = exec.Command(pgCtl, "-D", dataDir, "stop", "-m", "immediate").Run()
}
