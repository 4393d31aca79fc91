package selector

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseAndMatch(t *testing.T) {
	web := map[string]string{"env": "prod", "role": "web", "zone": "a"}
	db := map[string]string{"env": "prod", "role": "db", "canary": "true"}
	tests := []struct {
		sel      string
		web, db  bool
		wantText string
	}{
		{sel: "", web: true, db: true},
		{sel: "env=prod", web: true, db: true},
		{sel: "env==prod", web: true, db: true},
		{sel: "role=web", web: true, db: false},
		{sel: "role!=web", web: false, db: true},
		{sel: "role in (web, api)", web: true, db: false},
		{sel: "role notin (web,api)", web: false, db: true},
		{sel: "canary", web: false, db: true},
		{sel: "!canary", web: true, db: false},
		{sel: " env = prod , !canary , zone ", web: true, db: false},
		{sel: "missing!=x", web: true, db: true},
		{sel: "missing notin (x)", web: true, db: true},
		{sel: "missing in (x)", web: false, db: false},
		{sel: "index=1", web: false, db: false},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			s, err := Parse(tt.sel)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.sel, err)
			}
			if got := s.Matches(web); got != tt.web {
				t.Errorf("Matches(web) = %v, want %v", got, tt.web)
			}
			if got := s.Matches(db); got != tt.db {
				t.Errorf("Matches(db) = %v, want %v", got, tt.db)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ sel, want string }{
		{"env=prod,", "label key is empty"},
		{"env=prod;rm -rf /", "expected ',' between"},
		{"role in web", "expected '('"},
		{"role in (web", "expected ',' or ')'"},
		{"role in ()", "empty value"},
		{"-env=prod", "start and end"},
		{"env=$(id)", "expected ',' between"},
		{"env <> prod", "expected an operator"},
		{strings.Repeat("a", MaxLength+1), "at most"},
		{strings.Repeat("k,", MaxRequirements+1) + "k", "more than"},
		// A character outside printable ASCII is named where it stands.
		{"role=wéb", `at offset 6: character 'é' (U+00E9) is not allowed in a label value`},
		{"rôle=web", `at offset 1: character 'ô' (U+00F4) is not allowed in a label key`},
		{"é=web", `at offset 0: character 'é' (U+00E9) is not allowed in a label key`},
		{"role in (web,日本)", `at offset 13: character '日' (U+65E5) is not allowed in a label value`},
		{"role=web,\u00a0env=dev", `at offset 9: character '\u00a0' (U+00A0) is not allowed in a label key`},
		{"role=web\u200b", `character '\u200b' (U+200B) is not allowed in a label value`},
		{"!cañary", `character 'ñ' (U+00F1) is not allowed in a label key`},
		{"role=web\x00", `character '\x00' (U+0000) is not allowed in a label value`},
		{"role=w\xffb", `at offset 6: byte 0xFF (not UTF-8) is not allowed in a label value`},
		{"env=prod\n", `character '\n' (U+000A)`},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			_, err := Parse(tt.sel)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) error = %v, want it to contain %q", tt.sel, err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "env=prod", "role in (a,b),!x", "a notin (b)", "k!=v,z", "role=wéb", "r\xffle in (日本)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := Parse(s)
		if err != nil {
			if !utf8.ValidString(err.Error()) {
				t.Fatalf("Parse(%q) error is not valid UTF-8: %q", s, err)
			}
			return
		}
		// A parsed selector must evaluate without panicking on any input.
		sel.Matches(map[string]string{"env": "prod", s: s})
		if len(sel.reqs) > MaxRequirements {
			t.Fatalf("parsed %d requirements, limit %d", len(sel.reqs), MaxRequirements)
		}
	})
}
