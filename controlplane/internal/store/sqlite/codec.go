package sqlite

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"flotilla.dev/controlplane/internal/store"
)

// The column encodings below are the portable ones the schema documents:
//
//	time.Time          INTEGER Unix nanoseconds UTC; NULL for the zero time
//	map[string]string  TEXT JSON object; NULL for a nil map
//	[]byte             BLOB; NULL for a nil slice, so nil and empty differ
//
// Arguments are driver.Valuers and destinations sql.Scanners, so that
// queries list columns and fields side by side with no conversion code.

// timeArg encodes a time.Time column value (store.EncodeTime).
type timeArg time.Time

// Value implements driver.Valuer.
func (a timeArg) Value() (driver.Value, error) {
	nanos, null, err := store.EncodeTime(time.Time(a))
	if null || err != nil {
		return nil, err
	}
	return nanos, nil
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

// labelsArg encodes a label map column value (store.EncodeLabels).
type labelsArg map[string]string

// Value implements driver.Valuer.
func (a labelsArg) Value() (driver.Value, error) {
	text, null, err := store.EncodeLabels(a)
	if null || err != nil {
		return nil, err
	}
	return text, nil
}

// labelsCol decodes a label map column into *dst; NULL gives a nil map and
// "{}" an empty one (store.DecodeLabels).
type labelsCol struct{ dst *map[string]string }

// Scan implements sql.Scanner.
func (c labelsCol) Scan(src any) error {
	text, null, err := textColumn(src, "labels column")
	if null || err != nil {
		*c.dst = nil
		return err
	}
	*c.dst, err = store.DecodeLabels(text)
	return err
}

// stringsArg encodes a string list column as a JSON array ("[]" for nil).
type stringsArg []string

// Value implements driver.Valuer.
func (a stringsArg) Value() (driver.Value, error) {
	return store.EncodeStrings(a)
}

// stringsCol decodes a JSON array column; an empty array gives nil.
type stringsCol struct{ dst *[]string }

// Scan implements sql.Scanner.
func (c stringsCol) Scan(src any) error {
	text, null, err := textColumn(src, "string list column")
	if null || err != nil {
		*c.dst = nil
		return err
	}
	*c.dst, err = store.DecodeStrings(text)
	return err
}

// textColumn returns the text of a TEXT column value; null is true for
// NULL. what names the column kind in the error for any other type.
func textColumn(src any, what string) (text []byte, null bool, err error) {
	switch v := src.(type) {
	case nil:
		return nil, true, nil
	case string:
		return []byte(v), false, nil
	case []byte:
		return v, false, nil
	default:
		return nil, false, fmt.Errorf("%s: unexpected %T", what, src)
	}
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
