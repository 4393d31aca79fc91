package objstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// tempPrefix starts the names of the temporary files a local Put writes
// before it renames them; List never shows them.
const tempPrefix = ".flotilla-tmp-"

// Local is a Store in a directory of the host. Objects are files (mode
// 0600) under the root, in directories (0700) that follow the keys.
type Local struct {
	root string
}

var _ Store = (*Local)(nil)

// NewLocal returns a store rooted at dir (an absolute path), creating it
// when missing.
func NewLocal(dir string) (*Local, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("local destination %q: must be an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local destination: %w", err)
	}
	return &Local{root: filepath.Clean(dir)}, nil
}

// Root is the store's directory.
func (l *Local) Root() string { return l.root }

// Path is the file that holds key.
func (l *Local) Path(key string) string { return filepath.Join(l.root, filepath.FromSlash(key)) }

// URI implements Store.
func (l *Local) URI(key string) string {
	return (&url.URL{Scheme: "file", Path: l.Path(key)}).String()
}

// Put implements Store: the content goes to a temporary file in the
// target's directory, is synced, and is then linked (replace unset: fails
// when the key exists) or renamed to its final name.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, size int64, replace bool) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	// A full filesystem fails the write (or the sync); the temporary file
	// goes, nothing is left under key, and the error says so.
	return Full(l.put(ctx, key, r, size, replace), "local destination "+l.root)
}

func (l *Local) put(ctx context.Context, key string, r io.Reader, size int64, replace bool) error {
	final := l.Path(key)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return err
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	tmp := filepath.Join(filepath.Dir(final), tempPrefix+filepath.Base(final)+"-"+hex.EncodeToString(suffix[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // after a link or rename: only the temporary name goes
	n, err := io.Copy(f, &ctxReader{ctx: ctx, r: io.LimitReader(r, size+1)})
	if err == nil && n != size {
		err = fmt.Errorf("got %d bytes, want %d", n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if replace {
		err = os.Rename(tmp, final)
	} else if err = os.Link(tmp, final); errors.Is(err, fs.ErrExist) {
		err = fmt.Errorf("%s already exists", final)
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(final))
}

// Open implements Store.
func (l *Local) Open(_ context.Context, key string) (io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	f, err := os.Open(l.Path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", l.URI(key), ErrNotFound)
	}
	return f, err
}

// Stat implements Store.
func (l *Local) Stat(_ context.Context, key string) (Info, error) {
	if err := CheckKey(key); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(l.Path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%s: %w", l.URI(key), ErrNotFound)
	}
	if err != nil {
		return Info{}, err
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("%s is not a regular file", l.Path(key))
	}
	return Info{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil
}

// List implements Store. Only regular files count; temporary files of a
// Put in progress (or interrupted) are left out.
func (l *Local) List(_ context.Context, prefix string) ([]Info, error) {
	// Walk only the directory the prefix points into.
	start := l.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = l.Path(prefix[:i])
	}
	var out []Info
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		rel, err := filepath.Rel(l.root, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		out = append(out, Info{Key: key, Size: fi.Size(), Modified: fi.ModTime()})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, err
}

// Delete implements Store.
func (l *Local) Delete(_ context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := os.Remove(l.Path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// RemoveTemp deletes the temporary files of interrupted Puts older than
// age (a Put in progress in another process is younger) and returns their
// paths.
func (l *Local) RemoveTemp(age time.Duration) ([]string, error) {
	var removed []string
	cutoff := time.Now().Add(-age)
	err := filepath.WalkDir(l.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil // an unreadable directory is skipped
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(cutoff) {
			if os.Remove(path) == nil {
				removed = append(removed, path)
			}
		}
		return nil
	})
	return removed, err
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// syncDir makes the renames and links in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	return errors.Join(serr, cerr)
}
