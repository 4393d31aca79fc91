package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// CheckPrivateDir checks that dir is accessible by its owner only (mode
// 0700 or stricter). A loose directory that is still empty is tightened to
// 0700 and reported with tightened: nothing in it can have leaked, and
// volume mounts (a container's data volume) are usually created 0755. A
// loose directory with anything in it is refused with an error that names
// the directory and the chmod that fixes it.
func CheckPrivateDir(dir string) (tightened bool, err error) {
	info, err := os.Stat(dir)
	if err != nil {
		return false, fmt.Errorf("data directory: %w", err)
	}
	if !info.IsDir() {
		return false, fmt.Errorf("data directory %s is not a directory", dir)
	}
	if err := checkOwner("data directory "+dir, info, dir); err != nil {
		return false, err
	}
	perm := info.Mode().Perm()
	if perm&0o077 == 0 {
		return false, nil
	}
	empty, err := isEmptyDir(dir)
	if err != nil {
		return false, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if !empty {
		return false, fmt.Errorf("data directory %s has mode %04o; it holds keys, tokens and the store and must be accessible by its owner only (chmod 700 %s)", dir, perm, dir)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return false, fmt.Errorf("data directory %s has mode %04o and could not be tightened to 0700: %w", dir, perm, err)
	}
	// Re-check after the chmod: something created in between would have
	// been created while the directory was open to others.
	if empty, err := isEmptyDir(dir); err != nil || !empty {
		return false, fmt.Errorf("data directory %s changed while its mode was being tightened; check it and chmod 700 %s", dir, dir)
	}
	return true, nil
}

// CheckOwnFile checks that a file the control plane itself writes (a key,
// token or store file of its data directory dir), if it exists, belongs to
// this process's user, or that this process is root; the error names the
// chown of dir that fixes it. Files given to it by the operator
// (tls.key_file, a systemd credential) may belong to someone else and are
// not checked.
func CheckOwnFile(path, dir string) error {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return checkOwner(path, info, dir)
}

// geteuid is os.Geteuid; tests replace it.
var geteuid = os.Geteuid

// checkOwner refuses a data directory or secret file (what) that another
// user owns, unless this process is root: it could not use it (0700,
// 0600), and the usual cause is a volume written by an image or install
// that ran as root, now used by one that does not (the control plane's
// image runs as 65532). The error names the chown of the data directory
// dir that fixes it.
func checkOwner(what string, info fs.FileInfo, dir string) error {
	owner, ok := ownerOf(info)
	euid := geteuid()
	if !ok || euid <= 0 || owner == euid {
		return nil
	}
	return fmt.Errorf("%s belongs to user %d, but the control plane runs as user %d and cannot use it "+
		"(written by an earlier image or install that ran as another user?); give it the data directory: chown -R %d %s",
		what, owner, euid, euid, dir)
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// CheckSecretFile checks that a key, token or store file, if it exists, is
// readable and writable by its owner only (mode 0600 or stricter). A
// missing file is not an error: it will be created with the right mode.
func CheckSecretFile(path string) error {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if perm := info.Mode().Perm(); perm&^0o600 != 0 {
		return fmt.Errorf("%s has mode %04o; key, token and store files must be 0600 or stricter (chmod 600 %s)", path, perm, path)
	}
	return nil
}
