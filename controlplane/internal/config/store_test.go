package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, name, body string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStoreSettings(t *testing.T) {
	pwFile := writeFile(t, "pw", "s3cret\n", 0o600)
	cfg, _, err := Load([]string{"-store-driver", "postgres", "-store-max-conns", "25"},
		env(map[string]string{
			"FLOTILLA_STORE_DSN":           "postgres://flotilla@db.internal:5432/flotilla?sslmode=verify-full",
			"FLOTILLA_STORE_PASSWORD_FILE": pwFile,
		}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Driver != DriverPostgres || cfg.Store.MaxConns != 25 || cfg.Store.PasswordFile != pwFile {
		t.Errorf("store = %+v", cfg.Store)
	}
	conn, err := cfg.Store.ConnString()
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://flotilla:s3cret@db.internal:5432/flotilla?sslmode=verify-full"; conn != want {
		t.Errorf("ConnString = %q, want %q", conn, want)
	}
	if got := cfg.Store.RedactedDSN(); strings.Contains(got, "s3cret") {
		t.Errorf("RedactedDSN = %q shows the password", got)
	}

	def, _, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if def.Store.Driver != DriverSQLite || def.Store.MaxConns != defaultMaxConns || def.Store.LeaseTTL.Std() != defaultLeaseTTL || !def.Store.LeaseWait {
		t.Errorf("default store = %+v, want sqlite with max_conns %d, lease_ttl %s, lease_wait", def.Store, defaultMaxConns, defaultLeaseTTL)
	}
}

func TestStoreLeaseSettings(t *testing.T) {
	dsn := map[string]string{"FLOTILLA_STORE_DSN": "postgres://flotilla@db/flotilla"}
	cfg, _, err := Load([]string{"-store-driver", "postgres", "-store-lease-ttl", "1m", "-store-lease-wait=false"}, env(dsn), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.LeaseTTL.Std() != time.Minute || cfg.Store.LeaseWait {
		t.Errorf("store = %+v, want lease_ttl 1m and no wait", cfg.Store)
	}
	for _, ttl := range []string{"1s", "11m"} {
		_, _, err := Load([]string{"-store-driver", "postgres", "-store-lease-ttl", ttl}, env(dsn), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "store.lease_ttl") {
			t.Errorf("lease_ttl %s: err = %v, want one naming store.lease_ttl", ttl, err)
		}
	}
}

func TestConnStringKeywordValue(t *testing.T) {
	pwFile := writeFile(t, "pw", "it's \\ here\r\n", 0o600)
	s := Store{Driver: DriverPostgres, DSN: "host=db user='flo tilla' dbname=flotilla", PasswordFile: pwFile, MaxConns: 4, LeaseTTL: Duration(defaultLeaseTTL)}
	if err := s.validate(); err != nil {
		t.Fatal(err)
	}
	conn, err := s.ConnString()
	if err != nil {
		t.Fatal(err)
	}
	if want := `host='db' user='flo tilla' dbname='flotilla' password='it\'s \\ here'`; conn != want {
		t.Errorf("ConnString = %q, want %q", conn, want)
	}
	fields, err := parseKeywordValue(conn)
	if err != nil || fields[3] != (kvField{"password", `it's \ here`}) {
		t.Errorf("the rendered DSN reads back as %v, %v", fields, err)
	}
}

func TestRedactedDSN(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"postgres://u:pw@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u@h/db?password=pw&sslmode=require", "postgres://u:xxxxx@h/db?sslmode=require"},
		{"host=h password=pw user=u", "host='h' user='u' password='xxxxx'"},
		{"host=h user=u", "host=h user=u"},
		{"host=h password='unterminated", "(unparsable DSN, not shown)"},
	}
	for _, tt := range tests {
		if got := (Store{DSN: tt.dsn}).RedactedDSN(); got != tt.want {
			t.Errorf("RedactedDSN(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

func TestStoreErrorsNameTheField(t *testing.T) {
	pwFile := writeFile(t, "pw", "s3cret\n", 0o600)
	looseFile := writeFile(t, "loose", "s3cret\n", 0o644)
	emptyFile := writeFile(t, "empty", "\n", 0o600)
	const pg = "postgres://u@h/db"
	tests := []struct {
		name     string
		env      map[string]string
		want     string
		mustNots []string
	}{
		{"unknown driver", map[string]string{"FLOTILLA_STORE_DRIVER": "mysql"}, `store.driver: "mysql" is not one of`, nil},
		{"postgres without dsn", map[string]string{"FLOTILLA_STORE_DRIVER": "postgres"}, "store.dsn: required", nil},
		{"dsn with sqlite", map[string]string{"FLOTILLA_STORE_DSN": pg}, "store.dsn: set, but store.driver is sqlite", nil},
		{"password file with sqlite", map[string]string{"FLOTILLA_STORE_PASSWORD_FILE": pwFile}, "store.password_file: set, but", nil},
		{"password twice", map[string]string{"FLOTILLA_STORE_DRIVER": "postgres", "FLOTILLA_STORE_DSN": "postgres://u:hunter2@h/db",
			"FLOTILLA_STORE_PASSWORD_FILE": pwFile}, "store.dsn: carries a password", []string{"hunter2"}},
		{"password twice keyword form", map[string]string{"FLOTILLA_STORE_DRIVER": "postgres", "FLOTILLA_STORE_DSN": "host=h password=hunter2",
			"FLOTILLA_STORE_PASSWORD_FILE": pwFile}, "store.dsn: carries a password", []string{"hunter2"}},
		{"missing password file", map[string]string{"FLOTILLA_STORE_DRIVER": "postgres", "FLOTILLA_STORE_DSN": pg,
			"FLOTILLA_STORE_PASSWORD_FILE": "/nonexistent/pw"}, "store.password_file: stat /nonexistent/pw: no such file", nil},
		{"loose password file", map[string]string{"FLOTILLA_STORE_DRIVER": "postgres", "FLOTILLA_STORE_DSN": pg,
			"FLOTILLA_STORE_PASSWORD_FILE": looseFile}, "store.password_file: " + looseFile + " has mode 0644", []string{"s3cret"}},
		{"empty password file", map[string]string{"FLOTILLA_STORE_DRIVER": "postgres", "FLOTILLA_STORE_DSN": pg,
			"FLOTILLA_STORE_PASSWORD_FILE": emptyFile}, "store.password_file: " + emptyFile + " is empty", nil},
		{"bad dsn", map[string]string{"FLOTILLA_STORE_DRIVER": "postgres", "FLOTILLA_STORE_DSN": "host=h password='hunter2"},
			"store.dsn: the value of password: unterminated quote", []string{"hunter2"}},
		{"not a dsn", map[string]string{"FLOTILLA_STORE_DRIVER": "postgres", "FLOTILLA_STORE_DSN": "mysql://u:hunter2@h"},
			"store.dsn: a URL must start with postgres://", []string{"hunter2"}},
		{"zero pool", map[string]string{"FLOTILLA_STORE_DRIVER": "postgres", "FLOTILLA_STORE_DSN": pg, "FLOTILLA_STORE_MAX_CONNS": "0"},
			"store.max_conns: 0 must be between 1 and 1000", nil},
		{"pool not a number", map[string]string{"FLOTILLA_STORE_MAX_CONNS": "many"}, "store.max_conns (from FLOTILLA_STORE_MAX_CONNS)", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Load(nil, env(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			for _, s := range tt.mustNots {
				if strings.Contains(err.Error(), s) {
					t.Errorf("err = %v shows %q", err, s)
				}
			}
		})
	}
}
