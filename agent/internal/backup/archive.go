package backup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
)

// File names in the backup directory. An archive is written as
// <base>.dump.partial and renamed to <base>.dump only once verified; its
// manifest is <base>.json, written through <base>.json.tmp.
const (
	archiveSuffix  = ".dump"
	partialSuffix  = ".partial"
	manifestSuffix = ".json"
	tmpSuffix      = ".tmp"
	// timeLayout is the UTC time in names: sortable, no ':' (which some
	// filesystems and tools refuse).
	timeLayout = "20060102T150405Z"
)

// maxNameAttempts bounds the search for a free name when backups of one
// database finish within the same second.
const maxNameAttempts = 100

// reservation is a partial archive file created for one backup, with the
// final names it will take.
type reservation struct {
	file     *os.File
	partial  string
	archive  string
	manifest string
}

// reserve creates the partial file of a new archive of database in dir,
// named after started (UTC). The name is taken only if neither the archive
// nor its manifest exists yet, so a backup never overwrites another.
//
// taken, when not nil, reports names already used in the destination the
// archive goes to (an object store), which are skipped too.
func reserve(dir, database string, started time.Time, taken func(name string) bool) (*reservation, error) {
	base := database + "-" + started.UTC().Format(timeLayout)
	for i := 1; i <= maxNameAttempts; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		r := &reservation{
			archive:  filepath.Join(dir, name+archiveSuffix),
			manifest: filepath.Join(dir, name+manifestSuffix),
		}
		r.partial = r.archive + partialSuffix
		if exists(r.archive) || exists(r.manifest) || (taken != nil && taken(name)) {
			continue
		}
		f, err := os.OpenFile(r.partial, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create the archive file in %s: %w", dir, err)
		}
		r.file = f
		return r, nil
	}
	return nil, fmt.Errorf("no free archive name for %s in %s after %d attempts", base, dir, maxNameAttempts)
}

// discard closes and removes the partial file.
func (r *reservation) discard() error {
	_ = r.file.Close() // may already be closed; the removal is what matters
	if err := os.Remove(r.partial); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// commit renames the verified partial file to its final name and makes the
// rename durable.
func (r *reservation) commit() error {
	if err := os.Rename(r.partial, r.archive); err != nil {
		return fmt.Errorf("rename the verified archive: %w", err)
	}
	return syncDir(filepath.Dir(r.archive))
}

// uncommit removes the archive after its manifest could not be written, so
// that an archive on disk always has its manifest.
func (r *reservation) uncommit() error {
	if err := os.Remove(r.archive); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(r.archive))
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// removeStale deletes the partial archives and manifests that an agent
// killed in the middle of a backup left in dir. It runs before the executor
// accepts commands, so none of them belongs to a running backup.
func removeStale(dir string, log *zap.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("cannot list the backup directory for leftovers", zap.String("directory", dir), zap.Error(err))
		return
	}
	for _, e := range entries {
		name := e.Name()
		stale := strings.HasSuffix(name, archiveSuffix+partialSuffix) || strings.HasSuffix(name, manifestSuffix+tmpSuffix)
		if !stale || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, name)
		if err := os.Remove(path); err != nil {
			log.Warn("cannot remove a leftover partial backup file", zap.String("file", path), zap.Error(err))
			continue
		}
		log.Info("removed a partial backup file left by an interrupted backup", zap.String("file", path))
	}
}
