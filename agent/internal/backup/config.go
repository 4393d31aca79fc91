package backup

// Config is the agent's backup section (YAML "backup").
type Config struct {
	// Directory receives archives and manifests (created 0700); default
	// <state_dir>/backups.
	Directory string `yaml:"directory"`
	// PgDump and PgRestore are the binaries (default: looked up in PATH,
	// then /usr/lib/postgresql/*/bin).
	PgDump    string `yaml:"pg_dump"`
	PgRestore string `yaml:"pg_restore"`
	// Databases are the databases the agent may back up, by the name
	// commands use. Credentials stay here, never in a command.
	Databases map[string]Database `yaml:"databases"`
}

// Database is how to reach one database.
type Database struct {
	Host   string `yaml:"host"`   // host name, IP or socket directory
	Port   int    `yaml:"port"`   // default 5432
	User   string `yaml:"user"`
	DBName string `yaml:"dbname"` // default: the map key
	// PasswordFile holds the password (0600); empty for peer/trust auth.
	PasswordFile string `yaml:"password_file"`
	SSLMode      string `yaml:"sslmode"` // default prefer
}
