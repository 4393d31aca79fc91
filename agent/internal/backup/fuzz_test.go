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
