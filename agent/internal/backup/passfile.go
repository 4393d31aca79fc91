package backup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// readPassword reads a database's password file. The file must not be
// readable by group or others, like every secret the agent keeps. Errors
// name the file, never its content.
func readPassword(path string) (string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("password file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("password file %s has mode %#o: it must not be readable by group or others (chmod 600 it)", path, perm)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	// Editors end files with a newline; it is not part of the password.
	pw := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
	switch {
	case pw == "":
		return "", fmt.Errorf("password file %s is empty", path)
	case strings.ContainsAny(pw, "\r\n\x00"):
		return "", fmt.Errorf("password file %s holds more than one line: it must hold only the password", path)
	}
	return pw, nil
}

// password reads the database's password file; "" when none is configured
// (peer or trust authentication).
func (d Database) password() (string, error) {
	if d.PasswordFile == "" {
		return "", nil
	}
	return readPassword(d.PasswordFile)
}

// passfile is a temporary libpq password file (PGPASSFILE) in a private
// directory. The password reaches pg_dump this way rather than on its
// command line (visible in ps to every user) or in PGPASSWORD (visible in
// /proc/<pid>/environ to the same user, and deprecated by libpq).
type passfile struct {
	dir  string
	path string
}

// writePassfile writes password into a new 0600 file inside a new 0700
// directory under parent (os.TempDir() when empty). Call remove when done.
func writePassfile(parent, password string) (*passfile, error) {
	dir, err := os.MkdirTemp(parent, "flotilla-pgpass-")
	if err != nil {
		return nil, fmt.Errorf("create a private directory for the password file: %w", err)
	}
	p := &passfile{dir: dir, path: filepath.Join(dir, "pgpass")}
	// The wildcards match whatever host, port, database and user the
	// conninfo names; ':' and '\' are escaped as the passfile format wants.
	line := "*:*:*:*:" + strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(password) + "\n"
	if err := writeFileSync(p.path, []byte(line), 0o600); err != nil {
		p.remove()
		return nil, fmt.Errorf("write the temporary password file: %w", err)
	}
	return p, nil
}

// remove deletes the file and its directory.
func (p *passfile) remove() error {
	return os.RemoveAll(p.dir)
}

// writeFileSync creates path exclusively with perm, writes data and syncs.
func writeFileSync(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	return errors.Join(werr, serr, cerr)
}
