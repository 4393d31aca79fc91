package backups

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
)

func TestNormalizeFillsDefaults(t *testing.T) {
	got, err := Normalize(&flotillav1.BackupPolicy{Name: "nightly", Selector: "role=db", Database: "shop",
		CreatedBy: "someone", RecoveryPoints: []string{"ignored"}})
	if err != nil {
		t.Fatal(err)
	}
	want := &flotillav1.BackupPolicy{Name: "nightly", Selector: "role=db", Database: "shop", Schedule: "0 2 * * *",
		TimeZone: "UTC", Retention: DefaultRetention, DrillSchedule: "0 4 * * 0", Type: flotillav1.BackupType_BACKUP_TYPE_DUMP}
	if !proto.Equal(got, want) {
		t.Errorf("Normalize =\n%v\nwant\n%v", got, want)
	}
	custom := &flotillav1.BackupRetention{KeepDaily: 30}
	got, err = Normalize(&flotillav1.BackupPolicy{Name: "x", Selector: "role=db", Database: "shop", Retention: custom, TimeZone: "Europe/Paris"})
	if err != nil || !proto.Equal(got.GetRetention(), custom) || got.GetTimeZone() != "Europe/Paris" {
		t.Errorf("custom retention: %v, %v", got, err)
	}
}

func TestNormalizeNamesTheField(t *testing.T) {
	valid := func(edit func(*flotillav1.BackupPolicy)) *flotillav1.BackupPolicy {
		p := &flotillav1.BackupPolicy{Name: "nightly", Selector: "role=db", Database: "shop"}
		edit(p)
		return p
	}
	for _, tc := range []struct {
		name  string
		p     *flotillav1.BackupPolicy
		field string
		want  string
	}{
		{"nil", nil, "policy", "required"},
		{"no name", valid(func(p *flotillav1.BackupPolicy) { p.Name = "" }), "policy.name", "required"},
		{"bad name", valid(func(p *flotillav1.BackupPolicy) { p.Name = "Nightly_1" }), "policy.name", "not a policy name"},
		{"no selector", valid(func(p *flotillav1.BackupPolicy) { p.Selector = "" }), "policy.selector", "required"},
		{"bad selector", valid(func(p *flotillav1.BackupPolicy) { p.Selector = "role=;db" }), "policy.selector", ""},
		{"no database", valid(func(p *flotillav1.BackupPolicy) { p.Database = "" }), "policy.database", "backup.databases"},
		{"database with shell", valid(func(p *flotillav1.BackupPolicy) { p.Database = "$(id)" }), "policy.database", ""},
		{"bad cron", valid(func(p *flotillav1.BackupPolicy) { p.Schedule = "0 2 * *" }), "policy.schedule", "not a cron expression"},
		{"never fires", valid(func(p *flotillav1.BackupPolicy) { p.Schedule = "0 0 31 2 *" }), "policy.schedule", "never fires"},
		{"drill never fires", valid(func(p *flotillav1.BackupPolicy) { p.DrillSchedule = "0 0 30 2 *" }), "policy.drill_schedule", "never fires"},
		{"bad zone", valid(func(p *flotillav1.BackupPolicy) { p.TimeZone = "Mars/Olympus" }), "policy.time_zone", "IANA"},
		{"huge retention", valid(func(p *flotillav1.BackupPolicy) { p.Retention = &flotillav1.BackupRetention{KeepWeekly: 5000} }),
			"policy.retention.keep_weekly", "at most 1000"},
		{"bad destination", valid(func(p *flotillav1.BackupPolicy) {
			p.Destination = &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: "s3://bucket"}}}
		}), "policy.destination.s3.bucket", "lower-case"},
		{"bad type", valid(func(p *flotillav1.BackupPolicy) { p.Type = 9 }), "policy.type", "not a backup type"},
	} {
		_, err := Normalize(tc.p)
		var ve *fault.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field || !strings.Contains(ve.Reason, tc.want) {
			t.Errorf("%s: %v, want an InvalidArgument on %s containing %q", tc.name, err, tc.field, tc.want)
		}
	}
}

func TestRenderStatesScheduleAndRecoveryPoints(t *testing.T) {
	def, _ := Normalize(&flotillav1.BackupPolicy{Name: "nightly", Selector: "role=db", Database: "shop"})
	created := utc("2026-12-01T10:00:00Z")
	p, err := Decode(store.BackupPolicy{Name: "nightly", Spec: mustMarshal(def), CreatedBy: "operator:o", CreatedAt: created, UpdatedAt: created})
	if err != nil {
		t.Fatal(err)
	}
	runs := []store.BackupPolicyRun{{Policy: "nightly", Job: store.BackupJobBackup, LastSlot: utc("2026-12-07T02:00:00Z"),
		LastCommandID: "cmd-1", LastSucceeded: true, LastFinishedAt: utc("2026-12-07T02:03:00Z")}}
	out := p.Render(runs, utc("2026-12-07T09:00:00Z"))
	if got := out.GetBackupStatus().GetNextRunAt().AsTime(); !got.Equal(utc("2026-12-08T02:00:00Z")) {
		t.Errorf("next backup at %v", got)
	}
	if got := out.GetDrillStatus().GetNextRunAt().AsTime(); !got.Equal(utc("2026-12-06T04:00:00Z")) {
		t.Errorf("next drill at %v, want the owed Sunday slot (no drill ran yet)", got)
	}
	if out.GetCreatedBy() != "operator:o" || out.GetBackupStatus().GetLastCommandId() != "cmd-1" {
		t.Errorf("render = %v", out)
	}
	want := []string{
		"each of the last 7 backups (about 7 days at this schedule)",
		"one backup a day for the last 7 days that have one",
		"one backup a week for the last 4 weeks that have one",
		"one backup a month for the last 6 months that have one",
		"the newest verified backup, however old",
	}
	if strings.Join(out.GetRecoveryPoints(), "\n") != strings.Join(want, "\n") {
		t.Errorf("recovery points =\n%s\nwant\n%s", strings.Join(out.GetRecoveryPoints(), "\n"), strings.Join(want, "\n"))
	}
	minutely, _ := Decode(store.BackupPolicy{Name: "m", Spec: mustMarshal(&flotillav1.BackupPolicy{Name: "m", Schedule: "* * * * *",
		TimeZone: "UTC", DrillsDisabled: true}), CreatedAt: created})
	if got := RecoveryPoints(&flotillav1.BackupRetention{KeepLast: 7}, minutely.Backup, flotillav1.BackupType_BACKUP_TYPE_DUMP); got[0] != "each of the last 7 backups (about 7 minutes at this schedule)" {
		t.Errorf("minutely: %q", got[0])
	}
	// Base backups: the chain base backup → WAL makes every instant since
	// the oldest kept one recoverable; the defaults keep about 6 months.
	base := RecoveryPoints(def.GetRetention(), p.Backup, flotillav1.BackupType_BACKUP_TYPE_BASE)
	if want := "any point in time from the start of the oldest kept base backup to the last archived WAL segment " +
		"(about the last 180 days at this schedule), as long as the WAL archive has no gap"; base[0] != want || len(base) != 6 {
		t.Errorf("base backups: %q, want %q first", base, want)
	}
	p.Def.Paused = true
	if p.Render(runs, utc("2026-12-07T09:00:00Z")).GetBackupStatus().GetNextRunAt() != nil {
		t.Error("a paused policy has a next run")
	}
}
