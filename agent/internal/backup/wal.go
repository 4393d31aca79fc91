package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"flotilla.dev/agent/internal/backup/objstore"
)

// walFileRE matches the names PostgreSQL archives: segments
// (TTTTTTTTXXXXXXXXYYYYYYYY), their .partial form, backup history files
// (….backup) and timeline history files (TTTTTTTT.history).
var walFileRE = regexp.MustCompile(`^([0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$`)

// CheckWALName refuses a name that is not a WAL file name.
func CheckWALName(name string) error {
	if !walFileRE.MatchString(name) {
		return fmt.Errorf("%q is not a WAL file name (24 hex digits, a .partial or .backup form, or a timeline .history file)", truncateText(name))
	}
	return nil
}

// walKey is the object key of an archived WAL file of database.
func walKey(database, name string) string { return "wal/" + database + "/" + name }

// sumSuffix names the object that holds a WAL file's size and SHA-256,
// written after the file itself: wal-fetch checks what it downloads
// against it.
const sumSuffix = ".sha256"

// OpenWAL opens the WAL destination of a configured database:
// backup.databases.<name>.wal_destination, else the local backup
// directory (backup.directory, default <stateDir>/backups).
func OpenWAL(cfg Config, stateDir, database string) (objstore.Store, error) {
	db, ok := cfg.Databases[database]
	if !ok {
		return nil, fmt.Errorf("database %s is not in backup.databases", database)
	}
	if db.WALDestination != "" {
		return objstore.FromURI(db.WALDestination, cfg.S3)
	}
	dir := cfg.Directory
	if dir == "" {
		if stateDir == "" {
			return nil, errors.New("backup.directory: is required when the agent has no state directory")
		}
		dir = filepath.Join(stateDir, "backups")
	}
	return objstore.NewLocal(dir)
}

// WALPush archives the WAL file at path, called name, for database: the
// file, then its checksum object, each read back. It succeeds when the
// same content is already archived (PostgreSQL retries after a crash) and
// fails when a different content is archived under the name: the archive
// would otherwise silently hold another cluster's or timeline's WAL.
func WALPush(ctx context.Context, store objstore.Store, database, path, name string) error {
	if err := CheckWALName(name); err != nil {
		return err
	}
	local, err := objstore.DigestFile(path)
	if err != nil {
		return fmt.Errorf("read the WAL file: %w", err)
	}
	key := walKey(database, name)
	_, statErr := store.Stat(ctx, key)
	switch {
	case statErr == nil:
		stored, err := objstore.DigestObject(ctx, store, key)
		if err != nil {
			return err
		}
		if stored != local {
			return fmt.Errorf("%s is already archived with different content (%d bytes, SHA-256 %s; this file: %d bytes, SHA-256 %s): refusing to overwrite it; is another cluster archiving to the same place?",
				store.URI(key), stored.Size, stored.SHA256, local.Size, local.SHA256)
		}
		// Archived by an earlier attempt; make sure its checksum object is too.
	case errors.Is(statErr, objstore.ErrNotFound):
		if err := objstore.PutFile(ctx, store, key, path, local, false); err != nil {
			return err
		}
	default:
		return statErr
	}
	return putSum(ctx, store, key, local)
}

// putSum writes the checksum object of key, unless an identical one exists.
func putSum(ctx context.Context, store objstore.Store, key string, d objstore.Digest) error {
	line := fmt.Sprintf("%s %d\n", d.SHA256, d.Size)
	sumKey := key + sumSuffix
	if got, err := readSum(ctx, store, sumKey); err == nil && got == d {
		return nil
	}
	ld, _ := objstore.DigestReader(strings.NewReader(line))
	return objstore.PutVerified(ctx, store, sumKey, strings.NewReader(line), ld, true)
}

// readSum reads a checksum object.
func readSum(ctx context.Context, store objstore.Store, sumKey string) (objstore.Digest, error) {
	rc, err := store.Open(ctx, sumKey)
	if err != nil {
		return objstore.Digest{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 256))
	if err != nil {
		return objstore.Digest{}, err
	}
	var d objstore.Digest
	if _, err := fmt.Sscanf(string(data), "%64s %d", &d.SHA256, &d.Size); err != nil {
		return objstore.Digest{}, fmt.Errorf("%s is not a checksum line: %w", store.URI(sumKey), err)
	}
	return d, nil
}

// ErrWALMissing is returned by WALFetch for a file the archive does not
// have (PostgreSQL asks for files past the end of the archive).
var ErrWALMissing = errors.New("not in the WAL archive")

// WALFetch downloads the archived WAL file name of database to path,
// through a temporary file renamed once the content matches its checksum
// object.
func WALFetch(ctx context.Context, store objstore.Store, database, name, path string) error {
	if err := CheckWALName(name); err != nil {
		return err
	}
	key := walKey(database, name)
	want, err := readSum(ctx, store, key+sumSuffix)
	if errors.Is(err, objstore.ErrNotFound) {
		// A file without its checksum object was never acknowledged to
		// PostgreSQL: as good as missing.
		return fmt.Errorf("%s: %w", store.URI(key), ErrWALMissing)
	}
	if err != nil {
		return err
	}
	rc, err := store.Open(ctx, key)
	if errors.Is(err, objstore.ErrNotFound) {
		return fmt.Errorf("%s: %w", store.URI(key), ErrWALMissing)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp := path + ".flotilla-tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	got, err := objstore.DigestReader(io.TeeReader(rc, f))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", store.URI(key), err)
	}
	if got != want {
		return fmt.Errorf("%w: %s has %d bytes with SHA-256 %s, its checksum object says %d bytes with SHA-256 %s",
			objstore.ErrMismatch, store.URI(key), got.Size, got.SHA256, want.Size, want.SHA256)
	}
	return os.Rename(tmp, path)
}

// walSegmentLess orders segment names by position in the WAL (the last 16
// hex digits), whatever their timeline.
func walSegmentLess(a, b string) bool {
	if len(a) < 24 || len(b) < 24 {
		return a < b
	}
	return a[8:24] < b[8:24]
}
