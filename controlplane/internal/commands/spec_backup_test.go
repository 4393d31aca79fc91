package commands

import (
	"errors"
	"testing"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
)

func s3(bucket, prefix, endpoint string) *flotillav1.BackupDestination {
	return &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: bucket, Prefix: prefix, Endpoint: endpoint}}}
}

func pitr(target, dir string, port uint32) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{Database: "shop",
		Target: &flotillav1.RestoreCommand_PointInTime{PointInTime: &flotillav1.PointInTimeTarget{TargetTime: target, DataDirectory: dir, Port: port}}}}}
}

func TestValidateBackupKinds(t *testing.T) {
	prune := func(r *flotillav1.RetentionRules) *flotillav1.CommandSpec {
		return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Prune{Prune: &flotillav1.PruneCommand{Database: "shop", Retention: r}}}
	}
	dump := func(db string) *flotillav1.CommandSpec {
		return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{Database: "shop",
			Target: &flotillav1.RestoreCommand_Dump{Dump: &flotillav1.DumpRestoreTarget{NewDatabase: db}}}}}
	}
	drill := func(name string, d *flotillav1.BackupDestination) *flotillav1.CommandSpec {
		return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drill{Drill: &flotillav1.DrillCommand{Database: "shop", Backup: name, Destination: d}}}
	}
	base := &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_BaseBackup{BaseBackup: &flotillav1.BaseBackupCommand{Database: "shop",
		Destination: s3("flotilla-backups", "prod/db-1", "minio.internal:9000")}}}
	for _, tc := range []struct {
		name  string
		spec  *flotillav1.CommandSpec
		field string // "" for valid
	}{
		{"base backup to S3", base, ""},
		{"backup to a bad bucket", &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: "shop",
			Destination: s3("No_Such", "", "")}}}, "spec.backup.destination.s3.bucket"},
		{"prune", prune(&flotillav1.RetentionRules{KeepDaily: 7, TimeZone: "Europe/Paris"}), ""},
		{"prune keeping nothing", prune(&flotillav1.RetentionRules{}), "spec.prune.retention"},
		{"prune in no zone", prune(&flotillav1.RetentionRules{KeepLast: 1, TimeZone: "Paris"}), "spec.prune.retention.time_zone"},
		{"restore a dump", dump("shop_restored"), ""},
		{"restore into nothing", dump(""), "spec.restore.dump.new_database"},
		{"restore to latest", pitr("latest", "/var/lib/postgresql/restore", 5433), ""},
		{"restore to a time with an offset", pitr("2026-12-07T09:15:00+01:00", "/srv/pitr", 5433), ""},
		{"restore to a time without a zone", pitr("2026-12-07T09:15:00", "/srv/pitr", 5433), "spec.restore.point_in_time.target_time"},
		{"restore into a relative directory", pitr("latest", "srv/pitr", 5433), "spec.restore.point_in_time.data_directory"},
		{"restore on a privileged port", pitr("latest", "/srv/pitr", 80), "spec.restore.point_in_time.port"},
		{"restore without a target", &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{Database: "shop"}}}, "spec.restore"},
		{"drill the newest", drill("", nil), ""},
		{"drill a named backup", drill("shop-20261207T020000Z", nil), ""},
		{"drill a path", drill("../etc/passwd", nil), "spec.drill.backup"},
		{"drill with a bad prefix", drill("", s3("flotilla-backups", "a//b", "")), "spec.drill.destination.s3.prefix"},
	} {
		err := ValidateSpec("spec", tc.spec)
		var ve *fault.ValidationError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v, want valid", tc.name, err)
		case tc.field != "" && (!errors.As(err, &ve) || ve.Field != tc.field):
			t.Errorf("%s: %v, want an error on %s", tc.name, err, tc.field)
		}
	}
}
