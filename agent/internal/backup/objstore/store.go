package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// ErrNotFound is wrapped by the errors of Stat, Open and Delete for a key
// that does not exist.
var ErrNotFound = errors.New("object not found")

// Info describes one stored object.
type Info struct {
	// Key is the object's key relative to the store's root (no leading '/').
	Key string
	// Size is the object's size in bytes.
	Size int64
	// Modified is when the object was last written.
	Modified time.Time
}

// Store is a destination for backup objects. Keys are '/'-separated paths
// relative to the store's root, without "." or ".." segments.
type Store interface {
	// Put stores size bytes read from r under key, replacing nothing: an
	// interrupted Put leaves no object under key (a local store writes a
	// temporary file and renames it; an object store makes the object
	// visible only when the upload completes). When key exists, Put
	// replaces it only if replace is set.
	Put(ctx context.Context, key string, r io.Reader, size int64, replace bool) error
	// Open returns the object's content.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes the object.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns the objects whose keys start with prefix, in key order.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Delete removes the object; a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// URI names the object for people and the catalog, e.g.
	// "s3://bucket/prefix/key" or "file:///var/lib/flotilla/backups/key".
	URI(key string) string
}

// Digest is the size and hex SHA-256 of some content.
type Digest struct {
	Size   int64
	SHA256 string
}

// DigestReader reads r to its end and returns its size and SHA-256.
func DigestReader(r io.Reader) (Digest, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return Digest{}, err
	}
	return Digest{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// DigestFile returns the size and SHA-256 of the file at path.
func DigestFile(path string) (Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Digest{}, err
	}
	defer f.Close()
	d, err := DigestReader(f)
	if err != nil {
		return Digest{}, fmt.Errorf("read %s: %w", path, err)
	}
	return d, nil
}

// DigestObject reads the stored object under key and returns its size and
// SHA-256.
func DigestObject(ctx context.Context, s Store, key string) (Digest, error) {
	rc, err := s.Open(ctx, key)
	if err != nil {
		return Digest{}, err
	}
	defer rc.Close()
	d, err := DigestReader(rc)
	if err != nil {
		return Digest{}, fmt.Errorf("read back %s: %w", s.URI(key), err)
	}
	return d, nil
}

// ErrMismatch is wrapped by the errors that report a stored object whose
// size or checksum differs from what was written or expected.
var ErrMismatch = errors.New("stored object does not match")

// Verify reads the object under key back and checks its size and SHA-256
// against want.
func Verify(ctx context.Context, s Store, key string, want Digest) error {
	got, err := DigestObject(ctx, s, key)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: %s has %d bytes with SHA-256 %s, want %d bytes with SHA-256 %s",
			ErrMismatch, s.URI(key), got.Size, got.SHA256, want.Size, want.SHA256)
	}
	return nil
}

// PutFile uploads the file at path under key and reads the stored object
// back: it returns nil only when the stored object has want's size and
// SHA-256. A stored object that does not match is deleted.
func PutFile(ctx context.Context, s Store, key, path string, want Digest, replace bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return PutVerified(ctx, s, key, f, want, replace)
}

// PutVerified stores want.Size bytes of r under key, then reads the
// stored object back and checks its size and SHA-256 against want. A
// stored object that does not match is deleted.
func PutVerified(ctx context.Context, s Store, key string, r io.Reader, want Digest, replace bool) error {
	if err := s.Put(ctx, key, r, want.Size, replace); err != nil {
		return fmt.Errorf("store %s: %w", s.URI(key), err)
	}
	if err := Verify(ctx, s, key, want); err != nil {
		if errors.Is(err, ErrMismatch) {
			if derr := s.Delete(context.WithoutCancel(ctx), key); derr != nil {
				return fmt.Errorf("%w; deleting it also failed: %v", err, derr)
			}
			return fmt.Errorf("%w; it was deleted", err)
		}
		return err
	}
	return nil
}

// CheckKey refuses keys that are empty, absolute, or have empty, "." or
// ".." segments, or control characters.
func CheckKey(key string) error {
	if key == "" {
		return errors.New("empty object key")
	}
	if strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("object key %q must not start or end with '/'", truncate(key))
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("object key %q has an empty, '.' or '..' segment", truncate(key))
		}
	}
	if strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("object key %q has control characters", truncate(key))
	}
	return nil
}
