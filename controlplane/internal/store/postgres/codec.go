package postgres

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
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

// Times outside this range have no int64 nanosecond representation.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// timeArg encodes a time.Time column value.
type timeArg time.Time

// Int64Value implements pgtype.Int64Valuer.
func (a timeArg) Int64Value() (pgtype.Int8, error) {
	t := time.Time(a)
	if t.IsZero() {
		return pgtype.Int8{}, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return pgtype.Int8{}, fmt.Errorf("time %s is outside the storable range (years 1678 to 2262)", t)
	}
	return pgtype.Int8{Int64: t.UnixNano(), Valid: true}, nil
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

// labelsArg encodes a label map column value.
type labelsArg map[string]string

// TextValue implements pgtype.TextValuer.
func (a labelsArg) TextValue() (pgtype.Text, error) {
	if a == nil {
		return pgtype.Text{}, nil
	}
	b, err := json.Marshal(map[string]string(a))
	if err != nil {
		return pgtype.Text{}, fmt.Errorf("labels: %w", err)
	}
	return pgtype.Text{String: string(b), Valid: true}, nil
}

// labelsCol decodes a label map column into *dst; NULL gives a nil map and
// "{}" an empty one.
type labelsCol struct{ dst *map[string]string }

// ScanText implements pgtype.TextScanner.
func (c labelsCol) ScanText(v pgtype.Text) error {
	if !v.Valid {
		*c.dst = nil
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(v.String), &m); err != nil {
		return fmt.Errorf("labels column: %w", err)
	}
	if m == nil {
		m = map[string]string{}
	}
	*c.dst = m
	return nil
}

// stringsArg encodes a string list column as a JSON array ("[]" for nil).
// It returns a pgtype.Text rather than being a []string type with a
// valuer: pgx sends a nil slice as NULL without asking its valuer, which
// the NOT NULL column refuses (a service without a load balancer).
func stringsArg(list []string) pgtype.Text {
	if list == nil {
		return pgtype.Text{String: "[]", Valid: true}
	}
	b, _ := json.Marshal(list) // a []string always encodes
	return pgtype.Text{String: string(b), Valid: true}
}

// stringsCol decodes a JSON array column; an empty array gives nil.
type stringsCol struct{ dst *[]string }

// ScanText implements pgtype.TextScanner.
func (c stringsCol) ScanText(v pgtype.Text) error {
	if !v.Valid {
		*c.dst = nil
		return nil
	}
	var list []string
	if err := json.Unmarshal([]byte(v.String), &list); err != nil {
		return fmt.Errorf("string list column: %w", err)
	}
	if len(list) == 0 {
		list = nil
	}
	*c.dst = list
	return nil
}

// nullString encodes "" as NULL (a host command without a fleet command).
func nullString(s string) pgtype.Text {
	return pgtype.Text{String: s, Valid: s != ""}
}
