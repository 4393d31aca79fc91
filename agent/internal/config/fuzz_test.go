package config

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// FuzzParseLabels feeds the label parser ("env=prod,role=web", from a flag
// or FLOTILLA_LABELS) any string.
//
// Properties: nothing panics; parsed keys are non-empty, and keys and
// values are trimmed and hold no comma (nor a key an equals sign); writing
// the labels back as k=v,k=v and parsing that gives the same labels.
//
// The seed corpus is in testdata/fuzz/FuzzParseLabels.
func FuzzParseLabels(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		labels, err := ParseLabels(s)
		if err != nil {
			return
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			v := labels[k]
			switch {
			case k == "" || strings.ContainsAny(k, ",=") || k != strings.TrimSpace(k):
				t.Fatalf("%q gave the key %q", s, k)
			case strings.Contains(v, ",") || v != strings.TrimSpace(v):
				t.Fatalf("%q gave the value %q for %q", s, v, k)
			}
			parts = append(parts, k+"="+v)
		}
		again, err := ParseLabels(strings.Join(parts, ","))
		if err != nil || !maps.Equal(again, labels) {
			t.Fatalf("%q gave %v, which written back parses as %v (%v)", s, labels, again, err)
		}
	})
}
