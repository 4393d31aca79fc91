package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap/zaptest"

	"flotilla.dev/agent/internal/backup/objstore"
	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/pgtest"
)

func TestValidateKinds(t *testing.T) {
	e := newTestExecutor(t, map[string]Database{"app": {}})
	s3 := func(bucket, prefix, endpoint string) *flotillav1.BackupDestination {
		return &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: bucket, Prefix: prefix, Endpoint: endpoint}}}
	}
	backup := func(d *flotillav1.BackupDestination) *flotillav1.CommandSpec {
		return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: "app", Destination: d}}}
	}
	prune := func(r *flotillav1.RetentionRules) *flotillav1.CommandSpec {
		return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Prune{Prune: &flotillav1.PruneCommand{Database: "app", Retention: r}}}
	}
	pitr := func(target, dir string, port uint32) *flotillav1.CommandSpec {
		return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{Database: "app",
			Target: &flotillav1.RestoreCommand_PointInTime{PointInTime: &flotillav1.PointInTimeTarget{TargetTime: target, DataDirectory: dir, Port: port}}}}}
	}
	tests := []struct {
		name       string
		spec       *flotillav1.CommandSpec
		wantReason string
	}{
		{"s3 destination", backup(s3("my-bucket", "prod/db-1", "")), ""},
		{"s3 bucket with capitals", backup(s3("My_Bucket", "", "")), "backup.destination.s3.bucket"},
		{"s3 prefix with ..", backup(s3("b-1", "a/../b", "")), "backup.destination.s3.prefix"},
		{"s3 endpoint with a scheme", backup(s3("b-1", "", "https://evil")), "backup.destination.s3.endpoint"},
		{"base backup", &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_BaseBackup{BaseBackup: &flotillav1.BaseBackupCommand{Database: "app"}}}, ""},
		{"prune", prune(&flotillav1.RetentionRules{KeepDaily: 7, TimeZone: "Europe/Paris"}), ""},
		{"prune without rules", prune(&flotillav1.RetentionRules{}), "set at least one of keep_last"},
		{"prune unknown zone", prune(&flotillav1.RetentionRules{KeepLast: 1, TimeZone: "Mars/Olympus"}), "prune.retention.time_zone"},
		{"restore needs a target", &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{Database: "app"}}}, "set exactly one of dump, point_in_time"},
		{"restore dump bad name", restoreSpec("app", "", "x y", false, nil), "restore.dump.new_database"},
		{"restore backup path", restoreSpec("app", "../etc/passwd", "x", false, nil), "restore.backup"},
		{"pitr", pitr("2026-12-07T09:15:00+01:00", "/srv/restore", 5433), ""},
		{"pitr latest", pitr("latest", "/srv/restore", 5433), ""},
		{"pitr time without zone", pitr("2026-12-07T09:15:00", "/srv/restore", 5433), "explicit offset"},
		{"pitr relative directory", pitr("latest", "restore", 5433), "data_directory"},
		{"pitr unclean directory", pitr("latest", "/srv/../etc", 5433), "data_directory"},
		{"pitr privileged port", pitr("latest", "/srv/restore", 80), "port"},
		{"drill", drillSpec("app", "", nil), ""},
		{"drill bad backup name", drillSpec("app", ".hidden", nil), "drill.backup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.Validate(tt.spec)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !executor.IsRejection(err) || !strings.Contains(err.Error(), tt.wantReason) {
				t.Fatalf("Validate = %v, want a rejection containing %q", err, tt.wantReason)
			}
		})
	}
}

func TestRetain(t *testing.T) {
	// Newest first: every 12 hours over 40 days, from 2026-04-30 12:00 UTC back.
	var backups []time.Time
	for i := range 80 {
		backups = append(backups, time.Date(2026, 4, 30, 12, 0, 0, 0, time.UTC).Add(-time.Duration(i)*12*time.Hour))
	}
	kept := func(r *flotillav1.RetentionRules, zone *time.Location) []int {
		var out []int
		for i, why := range Retain(backups, r, zone) {
			if len(why) > 0 {
				out = append(out, i)
			}
		}
		return out
	}
	tests := []struct {
		name string
		r    *flotillav1.RetentionRules
		zone *time.Location
		want []int
	}{
		{"last 3", &flotillav1.RetentionRules{KeepLast: 3}, time.UTC, []int{0, 1, 2}},
		// Two backups a day: the newest of each day (12:00) is kept.
		{"daily 3", &flotillav1.RetentionRules{KeepDaily: 3}, time.UTC, []int{0, 2, 4}},
		// In UTC+14 the 00:00 UTC backup is 14:00 local, later than the
		// 12:00 UTC one (02:00 local the next day): day buckets move.
		{"daily 2 in a far zone", &flotillav1.RetentionRules{KeepDaily: 2}, time.FixedZone("", 14*3600), []int{0, 1}},
		// 2026-04-30 is a Thursday: the newest of the week before is 04-26 12:00.
		{"weekly 2", &flotillav1.RetentionRules{KeepWeekly: 2}, time.UTC, []int{0, 8}},
		{"monthly 2", &flotillav1.RetentionRules{KeepMonthly: 2}, time.UTC, []int{0, 60}},
		{"combined", &flotillav1.RetentionRules{KeepLast: 1, KeepDaily: 2, KeepMonthly: 2}, time.UTC, []int{0, 2, 60}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kept(tt.r, tt.zone); !equalInts(got, tt.want) {
				t.Errorf("kept %v, want %v", got, tt.want)
			}
		})
	}
	if why := Retain(backups[:1], &flotillav1.RetentionRules{KeepDaily: 1}, time.UTC); len(why[0]) == 0 || why[0][0] != "newest verified" {
		t.Errorf("the newest backup is kept for %v, want \"newest verified\" first", why[0])
	}
	if got := Retain(nil, &flotillav1.RetentionRules{KeepLast: 1}, time.UTC); len(got) != 0 {
		t.Errorf("Retain(nil) = %v", got)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseBackupLabel(t *testing.T) {
	label := "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 3\n"
	l, err := parseBackupLabel(strings.NewReader(label))
	if err != nil || l.startWAL != "000000010000000000000002" || l.timeline != 3 {
		t.Fatalf("parseBackupLabel = %+v, %v", l, err)
	}
	if _, err := parseBackupLabel(strings.NewReader("START WAL LOCATION: 0/1 (file ../../x)\n")); err == nil {
		t.Error("a hostile WAL file name was accepted")
	}
}

func TestCheckWALName(t *testing.T) {
	for name, ok := range map[string]bool{
		"000000010000000000000002":                 true,
		"00000002.history":                         true,
		"000000010000000000000002.partial":         true,
		"000000010000000000000002.00000028.backup": true,
		"00000001000000000000000g":                 false,
		"../000000010000000000000002":              false,
		"":                                         false,
		"000000010000000000000002/x":               false,
	} {
		if err := CheckWALName(name); (err == nil) != ok {
			t.Errorf("CheckWALName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

// An agent killed in the middle of a drill leaves a scratch server
// running; the next start stops it and removes its directory.
func TestNewStopsLeftoverScratchServers(t *testing.T) {
	initdb := pgtest.NewestBinary("initdb")
	if initdb == "" {
		pgtest.Require(t, "no PostgreSQL server binaries in %s", pgtest.LibDir)
	}
	scratch, err := os.MkdirTemp("", "flotilla-drills-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(scratch) })
	if err := os.Chmod(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	cfg := Config{PgDump: fakeBinary(t, bin, "pg_dump"), PgRestore: fakeBinary(t, bin, "pg_restore"),
		PostgresBinDir: filepath.Dir(initdb), ScratchDirectory: scratch, Databases: map[string]Database{"app": {}}}
	e, err := New(cfg, t.TempDir(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := serverCred()
	if err != nil {
		pgtest.Require(t, "%v", err)
	}
	dir, err := e.scratchDir(cred)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := e.startScratch(context.Background(), dir, cred)
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(e.Directory(), ".restore-123")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	if !srv.running(context.Background()) {
		t.Fatal("the scratch server is not running")
	}
	pidFile, err := os.ReadFile(filepath.Join(srv.dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	// The "restarted agent".
	if _, err := New(cfg, filepath.Dir(e.Directory()), zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	// pg_ctl stop -w returned: the postmaster is gone (or a zombie, when
	// the container's init does not reap the orphans pg_ctl leaves).
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGQUIT)
		t.Fatal("New left the scratch server running")
	}
	for _, d := range []string{dir, work} {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there: %v", d, err)
		}
	}
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// Prune with wal: the segments before the oldest kept base backup's start
// go, with their checksum objects; later segments and timeline history
// files stay. The dry run deletes nothing.
func TestPruneWAL(t *testing.T) {
	e := newTestExecutor(t, map[string]Database{"app": {}})
	ctx := context.Background()
	store, err := objstore.NewLocal(e.Directory())
	if err != nil {
		t.Fatal(err)
	}
	put := func(key, content string) {
		t.Helper()
		d, _ := objstore.DigestReader(strings.NewReader(content))
		if err := objstore.PutVerified(ctx, store, key, strings.NewReader(content), d, true); err != nil {
			t.Fatal(err)
		}
	}
	// Three base backups, a day apart, starting at segments 2, 5 and 9.
	start := time.Date(2026, 5, 1, 3, 0, 0, 0, time.UTC)
	for i, seg := range []string{"000000010000000000000002", "000000010000000000000005", "000000020000000000000009"} {
		name := fmt.Sprintf("app-2026050%dT030000Z", i+1)
		put(name+baseSuffix, "base")
		m := Manifest{Version: ManifestVersion, Type: TypeBase, Database: "app", Name: name, File: name + baseSuffix,
			SizeBytes: 4, StartedAt: start.AddDate(0, 0, i), StartWAL: seg}
		if err := putManifest(ctx, store, manifestKey(name), m); err != nil {
			t.Fatal(err)
		}
	}
	var segments []string
	for i := 1; i <= 10; i++ {
		tli := 1
		if i >= 9 {
			tli = 2
		}
		seg := fmt.Sprintf("%08X%016X", tli, i)
		segments = append(segments, seg)
		put(walKey("app", seg), "wal")
		put(walKey("app", seg)+sumSuffix, "sum")
	}
	put(walKey("app", "00000002.history"), "history")
	prune := func(dryRun bool) *flotillav1.PruneResult {
		res, err := e.Execute(ctx, &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Prune{Prune: &flotillav1.PruneCommand{
			Database: "app", DryRun: dryRun, Wal: true, Retention: &flotillav1.RetentionRules{KeepLast: 2}}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.GetPrune()
	}
	// Kept: the bases starting at segments 5 and 9; segments 1-4 go.
	if dry := prune(true); dry.GetWalSegmentsDeleted() != 4 || len(dry.GetDeleted()) != 1 {
		t.Fatalf("dry run = %v", dry)
	}
	if _, err := store.Stat(ctx, walKey("app", segments[0])); err != nil {
		t.Fatalf("the dry run deleted a segment: %v", err)
	}
	if res := prune(false); res.GetWalSegmentsDeleted() != 4 {
		t.Fatalf("prune = %v", res)
	}
	for i, seg := range segments {
		_, err := store.Stat(ctx, walKey("app", seg))
		_, sumErr := store.Stat(ctx, walKey("app", seg)+sumSuffix)
		if gone := i < 4; gone != errors.Is(err, objstore.ErrNotFound) || gone != errors.Is(sumErr, objstore.ErrNotFound) {
			t.Errorf("segment %s: stat %v, checksum %v; want gone=%v", seg, err, sumErr, gone)
		}
	}
	if _, err := store.Stat(ctx, walKey("app", "00000002.history")); err != nil {
		t.Errorf("the timeline history file was deleted: %v", err)
	}
}

// An archive that no manifest names (an upload the agent was killed in)
// is deleted by a prune once it is a day old, not before; it never counts
// as a backup.
func TestPruneOrphans(t *testing.T) {
	e := newTestExecutor(t, map[string]Database{"app": {}})
	ctx := context.Background()
	store, err := objstore.NewLocal(e.Directory())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e.clock = clockwork.NewFakeClockAt(now)
	for name, age := range map[string]time.Duration{"app-20260101T000000Z": 25 * time.Hour, "app-20260102T000000Z": time.Hour} {
		if err := os.WriteFile(store.Path(name+archiveSuffix), []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(store.Path(name+archiveSuffix), now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := e.Execute(ctx, &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Prune{Prune: &flotillav1.PruneCommand{
		Database: "app", Retention: &flotillav1.RetentionRules{KeepLast: 1}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := res.GetPrune(); len(p.GetKept())+len(p.GetDeleted()) != 0 || p.GetBytesFreed() != 4 {
		t.Errorf("prune = %v; want no backups and the old orphan's 4 bytes freed", p)
	}
	if _, err := store.Stat(ctx, "app-20260101T000000Z"+archiveSuffix); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("the day-old orphan is still there: %v", err)
	}
	if _, err := store.Stat(ctx, "app-20260102T000000Z"+archiveSuffix); err != nil {
		t.Errorf("the hour-old orphan (perhaps an upload in progress) was deleted: %v", err)
	}
}
