package nginx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// writeAtomic replaces path with content so that a reader (nginx -t, a
// reload, a crash) sees either the old file or the new one, never a mix: a
// temporary file in the same directory gets the content, the original's
// mode and, where permitted, its owner, is synced, and is renamed over the
// original; then the directory is synced so the rename survives a crash.
func writeAtomic(path string, content []byte, info os.FileInfo) (err error) {
	dir, base := filepath.Split(path)
	// The leading dot keeps the temporary file out of "include dir/*;"
	// globs should the agent die before the rename.
	tmp, err := os.CreateTemp(dir, "."+base+".flotilla-*")
	if err != nil {
		return fmt.Errorf("create a temporary file next to %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := fillAndClose(tmp, content, info); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return syncDir(dir)
}

// fillAndClose writes content to f with the mode and owner of info, syncs
// and closes it.
func fillAndClose(f *os.File, content []byte, info os.FileInfo) error {
	_, err := f.Write(content)
	if err == nil {
		err = f.Chmod(info.Mode().Perm())
	}
	if err == nil {
		err = keepOwner(f, info)
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// keepOwner gives f the owner and group of info when they differ from the
// agent's; an agent that may not chown (not root) leaves its own, which
// nginx's master process (root) reads all the same.
func keepOwner(f *os.File, info os.FileInfo) error {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || (int(st.Uid) == os.Geteuid() && int(st.Gid) == os.Getegid()) {
		return nil
	}
	if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, os.ErrPermission) {
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
