package backup

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"unicode"

	"flotilla.dev/agent/internal/backup/objstore"
	"flotilla.dev/pkg/validate"
)

// DefaultPort is the PostgreSQL port used when a database sets none.
const DefaultPort = 5432

// DefaultSSLMode is libpq's own default.
const DefaultSSLMode = "prefer"

// Config is the agent's backup section (YAML "backup").
type Config struct {
	// Directory receives archives and manifests (created 0700); default
	// <state_dir>/backups.
	Directory string `yaml:"directory"`
	// PgDump and PgRestore are the binaries (default: looked up in PATH,
	// then /usr/lib/postgresql/*/bin).
	PgDump    string `yaml:"pg_dump"`
	PgRestore string `yaml:"pg_restore"`
	// PostgresBinDir holds pg_basebackup, initdb, postgres and pg_ctl, used
	// for base backups, point-in-time restores and drills (default: the
	// newest /usr/lib/postgresql/*/bin).
	PostgresBinDir string `yaml:"postgres_bin_dir"`
	// ScratchDirectory is where drills and point-in-time restores create
	// their temporary clusters (default: the system's temporary directory).
	ScratchDirectory string `yaml:"scratch_directory"`
	// WALConfig is the configuration file that the restore_command of a
	// point-in-time restore passes to "flotilla-agent wal-fetch": it runs
	// as the postgres OS user, which must be able to read it (default: the
	// agent's own file).
	WALConfig string `yaml:"wal_config"`
	// S3 is how to reach S3-compatible object storage when a command names
	// an s3 destination; credentials live here or in the environment.
	S3 objstore.S3Config `yaml:"s3"`
	// Databases are the databases the agent may back up, by the name
	// commands use. Credentials stay here, never in a command.
	Databases map[string]Database `yaml:"databases"`
}

// Database is how to reach one database.
type Database struct {
	Host   string `yaml:"host"`   // host name, IP or socket directory
	Port   int    `yaml:"port"`   // default 5432
	User   string `yaml:"user"`   // default: libpq's (the OS user)
	DBName string `yaml:"dbname"` // default: the map key
	// PasswordFile holds the password (0600); empty for peer/trust auth.
	PasswordFile string `yaml:"password_file"`
	SSLMode      string `yaml:"sslmode"` // default prefer
	// WALDestination is where `flotilla-agent wal-push` archives the WAL of
	// the cluster that holds this database, and where wal-fetch and
	// point-in-time restores read it: "file:///dir" or
	// "s3://bucket/prefix[?endpoint=host:port]" (default: the local backup
	// directory). Segments go under wal/<name>/.
	WALDestination string `yaml:"wal_destination"`
}

// sslModes are the values libpq accepts for sslmode.
var sslModes = map[string]bool{
	"disable": true, "allow": true, "prefer": true,
	"require": true, "verify-ca": true, "verify-full": true,
}

// Validate checks the section and returns every problem at once, each
// naming its YAML field (e.g. "backup.databases.app.port: ...").
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	for _, f := range []struct{ field, path string }{
		{"backup.directory", c.Directory},
		{"backup.pg_dump", c.PgDump},
		{"backup.pg_restore", c.PgRestore},
		{"backup.postgres_bin_dir", c.PostgresBinDir},
		{"backup.scratch_directory", c.ScratchDirectory},
		{"backup.wal_config", c.WALConfig},
	} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			add(f.field, "must be an absolute path, got %q", f.path)
		}
	}
	if err := c.S3.Validate("backup.s3"); err != nil {
		errs = append(errs, err)
	}
	for _, name := range sortedKeys(c.Databases) {
		field := "backup.databases." + name
		// Commands name databases by these keys; the name ends up in file
		// names and log lines, so the grammar is strict.
		if err := validate.DatabaseName(name); err != nil {
			// %q keeps a hostile key readable and on one line.
			add(fmt.Sprintf("backup.databases[%q]", name), "key %v", err)
			continue
		}
		errs = append(errs, c.Databases[name].validate(field)...)
	}
	return errors.Join(errs...)
}

func (d Database) validate(field string) []error {
	var errs []error
	add := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
	if d.Port != 0 && (d.Port < 1 || d.Port > 65535) {
		add("port", "must be from 1 to 65535, got %d", d.Port)
	}
	if d.SSLMode != "" && !sslModes[d.SSLMode] {
		add("sslmode", "must be one of disable, allow, prefer, require, verify-ca, verify-full; got %q", d.SSLMode)
	}
	if d.PasswordFile != "" && !filepath.IsAbs(d.PasswordFile) {
		add("password_file", "must be an absolute path, got %q", d.PasswordFile)
	}
	if d.WALDestination != "" {
		if err := objstore.CheckURI(d.WALDestination); err != nil {
			add("wal_destination", "%v", err)
		}
	}
	for _, f := range []struct{ field, value string }{
		{"host", d.Host}, {"user", d.User}, {"dbname", d.DBName},
	} {
		if strings.IndexFunc(f.value, unicode.IsControl) >= 0 {
			add(f.field, "must not contain control characters")
		}
	}
	return errs
}

// withDefaults returns the database with its defaults filled in; name is
// its key in backup.databases.
func (d Database) withDefaults(name string) Database {
	if d.Port == 0 {
		d.Port = DefaultPort
	}
	if d.DBName == "" {
		d.DBName = name
	}
	if d.SSLMode == "" {
		d.SSLMode = DefaultSSLMode
	}
	return d
}

// conninfo is the libpq keyword/value connection string of the database,
// without the password (which travels in a passfile, never in arguments).
// Every value is quoted so that spaces, quotes and backslashes in the
// configuration cannot add keywords of their own.
func (d Database) conninfo() string {
	var b strings.Builder
	kv := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteString("='")
		b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v))
		b.WriteByte('\'')
	}
	kv("host", d.Host)
	kv("port", fmt.Sprint(d.Port))
	kv("user", d.User)
	kv("dbname", d.DBName)
	kv("sslmode", d.SSLMode)
	kv("connect_timeout", "10")
	// Lets a DBA see the agent's sessions in pg_stat_activity.
	kv("application_name", applicationName)
	return b.String()
}

// applicationName marks the agent's sessions in pg_stat_activity.
const applicationName = "flotilla-backup"

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
