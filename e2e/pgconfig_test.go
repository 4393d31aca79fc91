package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
)

// TestPostgresBadConfigAtStart starts the control plane on stores it
// cannot use and checks that it exits non-zero quickly with one line
// naming the cause, never the password.
func TestPostgresBadConfigAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	cpBin := fixture.Binary(t, "flotilla-controlplane")
	dir := t.TempDir()
	db := startStoreDB(t, dir)
	wrongPassword := filepath.Join(dir, "wrong.password")
	fixture.WriteFile(t, wrongPassword, "not-"+db.password+"\n", 0o600)
	newer := newerSchemaDB(t, db, dir)
	refused := fmt.Sprintf("127.0.0.1:%d", fixture.FreePort(t))

	tests := []struct {
		name string
		dsn  string
		// passwordFile is the store.password_file, if any.
		passwordFile string
		// want are what the error line must contain.
		want []string
	}{
		{"malformed DSN", "host=127.0.0.1 port=notaport user=flotilla_cp", db.passwordFile, []string{"store", "port"}},
		{"unreachable database", fmt.Sprintf("host=127.0.0.1 port=%s user=%s dbname=%s sslmode=disable", refused[len("127.0.0.1:"):], db.user, db.name),
			db.passwordFile, []string{"unavailable", refused}},
		{"password in the DSN, database unreachable", fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", db.user, db.password, refused, db.name),
			"", []string{"unavailable", refused}},
		{"password in the DSN and a password file", fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s", db.user, db.password, db.pg.Port, db.name),
			db.passwordFile, []string{"store.dsn", "password_file"}},
		{"wrong password", db.dsn(), wrongPassword, []string{"password authentication failed", db.user}},
		{"missing database", strings.Replace(db.dsn(), "dbname="+db.name, "dbname=absent_db", 1), db.passwordFile, []string{"absent_db", "does not exist"}},
		{"schema newer than the binary", newer, db.passwordFile, []string{"database is at version 9999", "this binary knows up to version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-data-dir", filepath.Join(t.TempDir(), "cp"), "-listen", fixture.FreeAddr(t),
				"-metrics-listen", fixture.FreeAddr(t), "-log-format", "console", "-store-driver", "postgres", "-store-dsn", tt.dsn}
			if tt.passwordFile != "" {
				args = append(args, "-store-password-file", tt.passwordFile)
			}
			began := time.Now()
			p := fixture.StartProcess(t, "controlplane", cpBin, nil, args...)
			code := p.Wait(t, 20*time.Second)
			took := time.Since(began)
			out := p.Output()
			line := lastLine(out)
			if code == 0 || !strings.HasPrefix(line, "flotilla-controlplane: ") {
				t.Fatalf("exit %d after %s, output:\n%s\nwant a non-zero exit with an error line", code, took, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(strings.ToLower(line), strings.ToLower(w)) {
					t.Errorf("error line %q does not name %q", line, w)
				}
			}
			if strings.Contains(out, db.password) {
				t.Errorf("the output shows the password:\n%s", out)
			}
			if took > 10*time.Second {
				t.Errorf("exited after %s, want quickly", took)
			}
			t.Logf("exit %d after %s: %s", code, took.Round(time.Millisecond), line)
		})
	}
}

// newerSchemaDB gives a database of its own the schema of this binary,
// through a control plane started on it and stopped, then records a
// version no binary knows, as a newer control plane would have; it returns
// the database's DSN.
func newerSchemaDB(t *testing.T, db storeDB, dir string) string {
	t.Helper()
	name := db.pg.CreateDatabase(t)
	db.pg.Exec(t, "postgres", fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", name, db.user))
	db.name = name
	cp := startControlPlane(t, filepath.Join(dir, "newer"), withName("controlplane-migrate"), db.flags())
	cp.proc.Signal(syscall.SIGTERM)
	cp.proc.Wait(t, 15*time.Second)
	db.pg.Exec(t, name, "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, now())")
	return db.dsn()
}
