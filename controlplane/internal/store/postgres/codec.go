package postgres

import (
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"flotilla.dev/controlplane/internal/store"
)

// The column encodings are SQLite's (see the schema):
//
//	time.Time          BIGINT Unix nanoseconds UTC; NULL for the zero time
//	map[string]string  TEXT JSON object; NULL for a nil map
//	[]byte             BYTEA; NULL for a nil slice, so nil and empty differ
//	                   (pgx writes and reads nil as NULL on its own)
//
// Arguments implement pgx's valuer interfaces and destinations its scanner
// interfaces, so that queries list columns and fields side by side.

// timeArg encodes a time.Time column value (store.EncodeTime).
type timeArg time.Time

// Int64Value implements pgtype.Int64Valuer.
func (a timeArg) Int64Value() (pgtype.Int8, error) {
	nanos, null, err := store.EncodeTime(time.Time(a))
	return pgtype.Int8{Int64: nanos, Valid: !null && err == nil}, err
}

// timeCol decodes a time.Time column into *dst, as UTC.
type timeCol struct{ dst *time.Time }

// ScanInt64 implements pgtype.Int64Scanner.
func (c timeCol) ScanInt64(v pgtype.Int8) error {
	if !v.Valid {
		*c.dst = time.Time{}
		return nil
	}
	*c.dst = time.Unix(0, v.Int64).UTC()
	return nil
}

// labelsArg encodes a label map column value (store.EncodeLabels).
type labelsArg map[string]string

// TextValue implements pgtype.TextValuer.
func (a labelsArg) TextValue() (pgtype.Text, error) {
	text, null, err := store.EncodeLabels(a)
	return pgtype.Text{String: text, Valid: !null && err == nil}, err
}

// labelsCol decodes a label map column into *dst; NULL gives a nil map and
// "{}" an empty one (store.DecodeLabels).
type labelsCol struct{ dst *map[string]string }

// ScanText implements pgtype.TextScanner.
func (c labelsCol) ScanText(v pgtype.Text) error {
	if !v.Valid {
		*c.dst = nil
		return nil
	}
	m, err := store.DecodeLabels([]byte(v.String))
	*c.dst = m
	return err
}

// stringsArg encodes a string list column as a JSON array ("[]" for nil).
// A function rather than a pgtype.TextValuer type: pgx sends a nil slice as
// NULL without asking its TextValue, which a NOT NULL column refuses.
func stringsArg(list []string) pgtype.Text {
	text, _ := store.EncodeStrings(list) // a []string always encodes
	return pgtype.Text{String: text, Valid: true}
}

// stringsCol decodes a JSON array column; an empty array gives nil.
type stringsCol struct{ dst *[]string }

// ScanText implements pgtype.TextScanner.
func (c stringsCol) ScanText(v pgtype.Text) error {
	if !v.Valid {
		*c.dst = nil
		return nil
	}
	list, err := store.DecodeStrings([]byte(v.String))
	*c.dst = list
	return err
}

// nullString encodes "" as NULL (a host command without a fleet command).
func nullString(s string) pgtype.Text {
	return pgtype.Text{String: s, Valid: s != ""}
}
