package backup

import (
	"strings"
	"testing"
	"time"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
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
