package sqlite

import (
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The column encodings below are the portable ones the schema documents:
//
//	time.Time          INTEGER Unix nanoseconds UTC; NULL for the zero time
//	map[string]string  TEXT JSON object; NULL for a nil map
//	[]byte             BLOB; NULL for a nil slice, so nil and empty differ
//
// Arguments are driver.Valuers and destinations sql.Scanners, so that
// queries list columns and fields side by side with no conversion code.

// Times outside this range have no int64 nanosecond representation.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// timeArg encodes a time.Time column value.
type timeArg time.Time

// Value implements driver.Valuer.
func (a timeArg) Value() (driver.Value, error) {
	t := time.Time(a)
	if t.IsZero() {
		return nil, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return nil, fmt.Errorf("time %s is outside the storable range (years 1678 to 2262)", t)
	}
	return t.UnixNano(), nil
}

// timeCol decodes a time.Time column into *dst, as UTC.
type timeCol struct{ dst *time.Time }

// Scan implements sql.Scanner.
func (c timeCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.dst = time.Time{}
	case int64:
		*c.dst = time.Unix(0, v).UTC()
	default:
		return fmt.Errorf("time column: unexpected %T", src)
	}
	return nil
}

// labelsArg encodes a label map column value.
type labelsArg map[string]string

// Value implements driver.Valuer.
func (a labelsArg) Value() (driver.Value, error) {
	if a == nil {
		return nil, nil
	}
	b, err := json.Marshal(map[string]string(a))
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	return string(b), nil
}

// labelsCol decodes a label map column into *dst; NULL gives a nil map and
// "{}" an empty one.
type labelsCol struct{ dst *map[string]string }

// Scan implements sql.Scanner.
func (c labelsCol) Scan(src any) error {
	var text []byte
	switch v := src.(type) {
	case nil:
		*c.dst = nil
		return nil
	case string:
		text = []byte(v)
	case []byte:
		text = v
	default:
		return fmt.Errorf("labels column: unexpected %T", src)
	}
	var m map[string]string
	if err := json.Unmarshal(text, &m); err != nil {
		return fmt.Errorf("labels column: %w", err)
	}
	if m == nil {
		// JSON "null" is not written by labelsArg; read it as no labels.
		m = map[string]string{}
	}
	*c.dst = m
	return nil
}

// blobArg encodes a []byte column value, keeping nil (NULL) distinct from
// empty (a zero-length BLOB).
type blobArg []byte

// Value implements driver.Valuer.
func (a blobArg) Value() (driver.Value, error) {
	if a == nil {
		return nil, nil
	}
	return []byte(a), nil
}

// blobCol decodes a BLOB column into *dst. The driver hands a zero-length
// BLOB over as a typed nil []byte and NULL as an untyped nil; database/sql
// would turn both into nil, so the distinction is made here.
type blobCol struct{ dst *[]byte }

// Scan implements sql.Scanner.
func (c blobCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.dst = nil
	case []byte:
		*c.dst = append([]byte{}, v...) // src is only valid until the next Scan
	case string:
		*c.dst = []byte(v)
	default:
		return fmt.Errorf("blob column: unexpected %T", src)
	}
	return nil
}

// isConflict reports whether err is a PRIMARY KEY or UNIQUE violation.
func isConflict(err error) bool {
	var se *msqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return true
	}
	return false
}
