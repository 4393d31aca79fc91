package validate

import (
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"
)

// Bounds of agent labels. The control plane refuses an agent with more
// labels, or a longer key or value.
const (
	MaxLabels           = 64
	MaxLabelKeyLength   = 253
	MaxLabelValueLength = 253
)

// IsLabelChar reports whether c may appear in a label key or value:
// [A-Za-z0-9-_./]. The selector parser scans names with it.
func IsLabelChar(c byte) bool {
	return isAlnum(c) || c == '-' || c == '_' || c == '.' || c == '/'
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// LabelKey checks a label key: 1 to 253 characters of [A-Za-z0-9-_./],
// starting and ending with a letter or digit.
func LabelKey(k string) error {
	if k == "" {
		return fmt.Errorf("label key is empty")
	}
	if len(k) > MaxLabelKeyLength {
		return fmt.Errorf("label key is %d characters, at most %d allowed", len(k), MaxLabelKeyLength)
	}
	return labelName("label key", k)
}

// LabelValue checks a label value: empty, or up to 253 characters of
// [A-Za-z0-9-_./] starting and ending with a letter or digit.
func LabelValue(v string) error {
	if v == "" {
		return nil
	}
	if len(v) > MaxLabelValueLength {
		return fmt.Errorf("label value is %d characters, at most %d allowed", len(v), MaxLabelValueLength)
	}
	return labelName("label value", v)
}

// CharAt names the character that starts at byte offset i of s for an
// error message: the character and, unless it is printable ASCII, its code
// point ("character 'é' (U+00E9)"), so that a non-ASCII or invisible
// character is recognisable,
// or the byte when s is not valid UTF-8 there ("byte 0xFF (not UTF-8)").
func CharAt(s string, i int) string {
	r, size := utf8.DecodeRuneInString(s[i:])
	switch {
	case r == utf8.RuneError && size <= 1:
		return fmt.Sprintf("byte 0x%02X (not UTF-8)", s[i])
	case r > ' ' && r < utf8.RuneSelf && r != 0x7f:
		return fmt.Sprintf("character %q", r) // plain to see
	}
	return fmt.Sprintf("character %q (%U)", r, r)
}

func labelName(what, s string) error {
	for i := 0; i < len(s); i++ {
		if !IsLabelChar(s[i]) {
			return fmt.Errorf("%s %s: %s not allowed (use ASCII letters, digits, '-', '_', '.', '/')", what, quote(s), CharAt(s, i))
		}
	}
	if !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return fmt.Errorf("%s %s must start and end with a letter or digit", what, quote(s))
	}
	return nil
}

// Labels checks every key and value of a label set of at most maxLabels.
func Labels(labels map[string]string, maxLabels int) error {
	if len(labels) > maxLabels {
		return fmt.Errorf("%d labels, at most %d allowed", len(labels), maxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		v := labels[k]
		if err := LabelKey(k); err != nil {
			return err
		}
		if err := LabelValue(v); err != nil {
			return fmt.Errorf("label %s: %w", quote(k), err)
		}
	}
	return nil
}
