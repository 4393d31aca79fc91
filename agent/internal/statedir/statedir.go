package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Modes the agent creates its state with, and requires of it.
const (
	DirMode  os.FileMode = 0o700
	FileMode os.FileMode = 0o600
)

// notOwnerOnly are the permission bits of group and others.
const notOwnerOnly os.FileMode = 0o077

// Ensure creates dir with DirMode if it does not exist; otherwise it checks
// that dir and every regular file directly in it are private to the owner
// (no group or other permission bits). The error names the directory or
// file and the chmod that fixes it. Subdirectories are not checked: they
// belong to the executors that made them (e.g. backups).
func Ensure(dir string) error {
	if dir == "" {
		return errors.New("state directory not set")
	}
	info, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, DirMode); err != nil {
			return fmt.Errorf("creating the state directory: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", dir)
	}
	if perm := info.Mode().Perm(); perm&notOwnerOnly != 0 {
		return fmt.Errorf("state directory %s has mode %04o, but it holds the agent's private key and must be accessible "+
			"to the agent's user only; fix it with: chmod %o %s", dir, perm, DirMode, shellQuote(dir))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := checkStateFile(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// checkStateFile refuses a state file that group or others can access.
func checkStateFile(path string) error {
	perm, err := mode(path)
	if err != nil || perm&notOwnerOnly == 0 {
		return err
	}
	hint := ""
	if strings.HasSuffix(path, ".key") {
		hint = " If someone else may have read the private key, treat it as compromised: " +
			"delete the agent in the control plane and register this host again."
	}
	return fmt.Errorf("%s has mode %04o, but the agent's state files must be readable by the agent's user only; "+
		"fix it with: chmod %o %s.%s", path, perm, FileMode, shellQuote(path), hint)
}

// CheckSecretFile refuses a file holding a secret (what names it in the
// error, e.g. "join token file") that group or others can access. A file
// that does not exist passes: whoever needs it reports that.
func CheckSecretFile(path, what string) error {
	perm, err := mode(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if perm&notOwnerOnly != 0 {
		return fmt.Errorf("%s %s has mode %04o, but it holds a secret and must be readable by the agent's user only; "+
			"fix it with: chmod %o %s (if someone else may have read it, revoke it and use a new one)",
			what, path, perm, FileMode, shellQuote(path))
	}
	return nil
}

// mode is the permission bits of path, symlinks followed (a Kubernetes
// secret volume is a symlink to the file that counts).
func mode(path string) (os.FileMode, error) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return info.Mode().Perm(), nil
}

// plainPath needs no quoting in a POSIX shell.
var plainPath = regexp.MustCompile(`^[A-Za-z0-9_./+:@%-]+$`)

// shellQuote quotes path for the chmod command the operator copies.
func shellQuote(path string) string {
	if plainPath.MatchString(path) {
		return path
	}
	return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
}
