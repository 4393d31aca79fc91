package store

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// The column encodings both drivers share (see the schema). Each driver
// wraps these in its own argument and destination types; the meaning of a
// column lives here once.

// Times outside this range have no int64 nanosecond representation.
var (
	minColumnTime = time.Unix(0, math.MinInt64)
	maxColumnTime = time.Unix(0, math.MaxInt64)
)

// EncodeTime encodes a time column as Unix nanoseconds. null is true for
// the zero time, which is stored as NULL; a time with no int64 nanosecond
// representation is an error.
func EncodeTime(t time.Time) (nanos int64, null bool, err error) {
	if t.IsZero() {
		return 0, true, nil
	}
	if t.Before(minColumnTime) || t.After(maxColumnTime) {
		return 0, false, fmt.Errorf("time %s is outside the storable range (years 1678 to 2262)", t)
	}
	return t.UnixNano(), false, nil
}

// EncodeLabels encodes a label map column as a JSON object. null is true
// for a nil map, which is stored as NULL; an empty map is "{}".
func EncodeLabels(m map[string]string) (text string, null bool, err error) {
	if m == nil {
		return "", true, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", false, fmt.Errorf("labels: %w", err)
	}
	return string(b), false, nil
}

// DecodeLabels decodes a non-NULL label map column. JSON null (never
// written by EncodeLabels) reads as an empty map, so only NULL gives nil.
func DecodeLabels(text []byte) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal(text, &m); err != nil {
		return nil, fmt.Errorf("labels column: %w", err)
	}
	if m == nil {
		m = map[string]string{}
	}
	return m, nil
}

// EncodeStrings encodes a string list column as a JSON array; nil is "[]".
func EncodeStrings(list []string) (string, error) {
	if list == nil {
		return "[]", nil
	}
	b, err := json.Marshal(list)
	if err != nil {
		return "", fmt.Errorf("string list: %w", err)
	}
	return string(b), nil
}

// DecodeStrings decodes a non-NULL string list column; an empty array
// gives nil.
func DecodeStrings(text []byte) ([]string, error) {
	var list []string
	if err := json.Unmarshal(text, &list); err != nil {
		return nil, fmt.Errorf("string list column: %w", err)
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}
