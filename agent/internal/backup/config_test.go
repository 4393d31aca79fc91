package backup

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestConfigValidate(t *testing.T) {
	valid := Database{Host: "db.internal", Port: 5432, User: "backup", PasswordFile: "/etc/flotilla/pg.pass", SSLMode: "require"}
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings; none means valid
	}{
		{name: "empty section", cfg: Config{}},
		{name: "defaults everywhere", cfg: Config{Databases: map[string]Database{"app": {}}}},
		{name: "full", cfg: Config{Directory: "/var/backups", PgDump: "/usr/bin/pg_dump", PgRestore: "/usr/bin/pg_restore",
			Databases: map[string]Database{"app_1-main": valid}}},
		{name: "every sslmode", cfg: Config{Databases: map[string]Database{
			"a": {SSLMode: "disable"}, "b": {SSLMode: "allow"}, "c": {SSLMode: "prefer"},
			"d": {SSLMode: "require"}, "e": {SSLMode: "verify-ca"}, "f": {SSLMode: "verify-full"},
		}}},
		{name: "name with a shell metacharacter",
			cfg:     Config{Databases: map[string]Database{"app;rm -rf /": {}}},
			wantErr: []string{`backup.databases["app;rm -rf /"]: key "app;rm -rf /" is not a database name`}},
		{name: "name too long",
			cfg:     Config{Databases: map[string]Database{strings.Repeat("a", 64): {}}},
			wantErr: []string{"is not a database name"}},
		{name: "empty name",
			cfg:     Config{Databases: map[string]Database{"": {}}},
			wantErr: []string{`backup.databases[""]`}},
		{name: "port out of range",
			cfg:     Config{Databases: map[string]Database{"app": {Port: 70000}}},
			wantErr: []string{"backup.databases.app.port: must be from 1 to 65535, got 70000"}},
		{name: "negative port",
			cfg:     Config{Databases: map[string]Database{"app": {Port: -1}}},
			wantErr: []string{"backup.databases.app.port"}},
		{name: "unknown sslmode",
			cfg:     Config{Databases: map[string]Database{"app": {SSLMode: "on"}}},
			wantErr: []string{`backup.databases.app.sslmode: must be one of`}},
		{name: "relative password file",
			cfg:     Config{Databases: map[string]Database{"app": {PasswordFile: "pg.pass"}}},
			wantErr: []string{`backup.databases.app.password_file: must be an absolute path, got "pg.pass"`}},
		{name: "control character in user",
			cfg:     Config{Databases: map[string]Database{"app": {User: "a\nb"}}},
			wantErr: []string{"backup.databases.app.user: must not contain control characters"}},
		{name: "relative paths",
			cfg:     Config{Directory: "backups", PgDump: "pg_dump", PgRestore: "bin/pg_restore"},
			wantErr: []string{"backup.directory: must be an absolute path", "backup.pg_dump:", "backup.pg_restore:"}},
		{name: "every problem at once",
			cfg: Config{Databases: map[string]Database{
				"a": {Port: 99999, SSLMode: "yes", PasswordFile: "x"},
			}},
			wantErr: []string{"backup.databases.a.port", "backup.databases.a.sslmode", "backup.databases.a.password_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	got := Database{}.withDefaults("app")
	want := Database{Port: DefaultPort, DBName: "app", SSLMode: DefaultSSLMode}
	if got != want {
		t.Errorf("withDefaults = %+v, want %+v", got, want)
	}
	kept := Database{Port: 6543, DBName: "other", SSLMode: "disable"}
	if got := kept.withDefaults("app"); got != kept {
		t.Errorf("withDefaults changed set fields: %+v", got)
	}
}

// TestConninfoQuoting parses the conninfo back with pgx, whose parser
// follows libpq's: hostile values must come back as they were, without
// adding keywords of their own.
func TestConninfoQuoting(t *testing.T) {
	db := Database{
		Host:    "db.internal",
		Port:    6543,
		User:    `it's \ me sslmode=disable`,
		DBName:  `app' host='evil.example`,
		SSLMode: "require",
	}
	cfg, err := pgx.ParseConfig(db.conninfo())
	if err != nil {
		t.Fatalf("ParseConfig(%s): %v", db.conninfo(), err)
	}
	if cfg.Host != db.Host || cfg.Port != uint16(db.Port) || cfg.User != db.User || cfg.Database != db.DBName {
		t.Errorf("parsed host=%q port=%d user=%q dbname=%q, want %+v", cfg.Host, cfg.Port, cfg.User, cfg.Database, db)
	}
	if cfg.TLSConfig == nil {
		t.Error("sslmode=require was lost")
	}
	if got := cfg.RuntimeParams["application_name"]; got != applicationName {
		t.Errorf("application_name = %q, want %q", got, applicationName)
	}
	if strings.Contains(db.conninfo(), "password") {
		t.Errorf("conninfo %q mentions a password", db.conninfo())
	}
}
