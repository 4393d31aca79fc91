package backup

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// FuzzValidate feeds the backup executor's Validate the database names a
// control plane could send.
//
// Properties: nothing panics; a refusal is a *executor.Rejection whose
// reason stays short whatever the name (it never echoes a long or hostile
// string); an accepted name is one of backup.databases.
//
// The seed corpus is in testdata/fuzz/FuzzValidate.
func FuzzValidate(f *testing.F) {
	bin := f.TempDir()
	for _, name := range []string{"pg_dump", "pg_restore"} {
		if err := os.WriteFile(filepath.Join(bin, name), nil, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	configured := map[string]Database{"app": {}, "app-2": {}, "Billing_DB": {}}
	e, err := New(Config{
		PgDump:    filepath.Join(bin, "pg_dump"),
		PgRestore: filepath.Join(bin, "pg_restore"),
		Databases: configured,
	}, f.TempDir(), zap.NewNop())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, database string) {
		spec := &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: database}}}
		err := e.Validate(spec)
		if err == nil {
			if _, ok := configured[database]; !ok {
				t.Fatalf("database %q accepted but not configured", database)
			}
			return
		}
		if !executor.IsRejection(err) {
			t.Fatalf("Validate returned %T %v, want a *executor.Rejection", err, err)
		}
		// The longest reason quotes a 63-byte valid name.
		if len(err.Error()) > 160 {
			t.Fatalf("a %d-byte name gave a %d-byte reason: %.80q...", len(database), len(err.Error()), err.Error())
		}
	})
}

// FuzzValidateRestore feeds Validate the free-form fields of restore,
// drill and backup commands: a backup name, a target time, a data
// directory and an S3 bucket and prefix.
//
// Properties: nothing panics; a refusal is a *executor.Rejection whose
// reason stays short; an accepted point-in-time target has an explicit
// zone and a clean absolute data directory.
func FuzzValidateRestore(f *testing.F) {
	bin := f.TempDir()
	for _, name := range []string{"pg_dump", "pg_restore"} {
		if err := os.WriteFile(filepath.Join(bin, name), nil, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	e, err := New(Config{PgDump: filepath.Join(bin, "pg_dump"), PgRestore: filepath.Join(bin, "pg_restore"),
		Databases: map[string]Database{"app": {}}}, f.TempDir(), zap.NewNop())
	if err != nil {
		f.Fatal(err)
	}
	f.Add("app-20261207T020000Z", "2026-12-07T09:15:00+01:00", "/srv/restore", "acme-backups", "db-1")
	f.Add("", "latest", "/srv/x", "b.c-d", "")
	f.Add("../x", "2026-12-07T09:15:00", "relative", "UPPER", "a//b")
	f.Add("\x00", "2026-13-07T09:15:00Z", "/a/../b", "-bad", "/lead")
	f.Fuzz(func(t *testing.T, backup, target, dir, bucket, prefix string) {
		dest := &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: bucket, Prefix: prefix}}}
		specs := []*flotillav1.CommandSpec{
			{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{Database: "app", Backup: backup, Destination: dest,
				Target: &flotillav1.RestoreCommand_PointInTime{PointInTime: &flotillav1.PointInTimeTarget{TargetTime: target, DataDirectory: dir, Port: 5433}}}}},
			{Kind: &flotillav1.CommandSpec_Drill{Drill: &flotillav1.DrillCommand{Database: "app", Backup: backup, Destination: dest}}},
		}
		for _, spec := range specs {
			err := e.Validate(spec)
			if err == nil {
				if r := spec.GetRestore(); r != nil {
					if _, perr := parseTarget(target); perr != nil || !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
						t.Fatalf("accepted target %q, directory %q", target, dir)
					}
				}
				continue
			}
			if !executor.IsRejection(err) {
				t.Fatalf("Validate returned %T %v, want a *executor.Rejection", err, err)
			}
			// %q of 64 cut bytes is at most 256 characters, plus the field.
			if len(err.Error()) > 400 {
				t.Fatalf("a %d-byte reason: %.80q...", len(err.Error()), err.Error())
			}
		}
	})
}
