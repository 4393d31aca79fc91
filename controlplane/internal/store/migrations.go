package store

import (
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
)

// migrationName is NNNN_description.sql; NNNN is the schema version, the
// same in both drivers for the same schema.
var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// Migration is one numbered schema change of a driver.
type Migration struct {
	Version int    // 1, 2, 3…: the schema version it brings the database to
	Name    string // file name, for errors
	SQL     string // the statements
}

// LoadMigrations reads the migrations at the root of fsys and checks that
// they are numbered 1, 2, 3… without gaps or duplicates, so that a version
// number alone identifies a schema. They are returned in version order.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("store: read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if e.IsDir() || m == nil {
			return nil, fmt.Errorf("store: migration %q: name must match %s", e.Name(), migrationName)
		}
		version, _ := strconv.Atoi(m[1]) // four digits always parse
		text, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("store: read migration %q: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: version, Name: e.Name(), SQL: string(text)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("store: migration %q: version %d, want %d", m.Name, m.Version, i+1)
		}
	}
	return ms, nil
}

// PendingMigrations returns the migrations of ms a database at schema
// version current has yet to apply. A database at a version beyond ms was
// migrated by a newer binary: the error wraps ErrSchemaTooNew and names
// both versions.
func PendingMigrations(ms []Migration, current int) ([]Migration, error) {
	if current > len(ms) {
		return nil, fmt.Errorf("store: %w: database is at version %d, this binary knows up to version %d",
			ErrSchemaTooNew, current, len(ms))
	}
	return ms[current:], nil
}
