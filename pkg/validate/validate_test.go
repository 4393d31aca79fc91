package validate

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// check runs a validator over a table: want is "" when the value is
// valid, else a text the error must contain.
func check(t *testing.T, name string, fn func(string) error, tests []struct{ in, want string }) {
	t.Helper()
	for _, tt := range tests {
		err := fn(tt.in)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s(%q) = %v, want nil", name, tt.in, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s(%q) = %v, want an error containing %q", name, tt.in, err, tt.want)
		case err != nil && (strings.Contains(err.Error(), "\n") || len(err.Error()) > 400):
			t.Errorf("%s(%q) = %q: a long or multi-line message", name, tt.in, err)
		}
	}
}

func TestImage(t *testing.T) {
	check(t, "Image", func(s string) error { _, err := Image(s); return err }, []struct{ in, want string }{
		{"nginx:1.25", ""},
		{"localhost:5000/app@sha256:" + strings.Repeat("a", 64), ""},
		{"ghcr.io/org/app:v2@sha256:" + strings.Repeat("b", 64), ""},
		{"", "is required"},
		{"nginx", `"nginx" names no tag or digest`},
		{"Nginx:1", "is not an image reference (name:tag or name@sha256:digest): the repository name must be lower case"},
		{"registry.internal:5000/Shop/web:v1", "must be lower case"},
		{"app:tag with space", "is not an image reference (name:tag or name@sha256:digest): spaces and control characters are not allowed"},
		{"app@md5:abc", "a digest is sha256: and 64 hexadecimal digits"},
		{"$(id)", "is not an image reference"},
		{"nginx:1\n", "is not an image reference"},
		{"app@sha256:short", "is not an image reference"},
		{"a/" + strings.Repeat("b", MaxImageLength) + ":1", "at most 512 allowed"},
	})
	// The parser's words are for programmers; the caller reads ours.
	for _, bad := range []string{"Nginx:1", "app:tag with space", "$(id)", "app@sha256:short", "a:b:c:d", "web:-x"} {
		if _, err := Image(bad); err == nil || strings.Contains(err.Error(), "invalid reference format") || strings.Contains(err.Error(), "repository name (") {
			t.Errorf("Image(%q) = %v: want a refusal in the caller's terms", bad, err)
		}
	}
	named, err := Image("nginx:1.25")
	if err != nil || named.String() != "docker.io/library/nginx:1.25" {
		t.Errorf("Image(nginx:1.25) = %v, %v; want the normalized reference", named, err)
	}
}

func TestNames(t *testing.T) {
	check(t, "ContainerName", ContainerName, []struct{ in, want string }{
		{"web", ""}, {"w", ""}, {"web_1.a-b", ""}, {"1web", ""}, {strings.Repeat("a", 128), ""},
		{"", "is not a container name"}, {"-web", "is not a container name"}, {"/web", "is not a container name"},
		{"web 1", "is not a container name"}, {"web;rm", "is not a container name"},
		{strings.Repeat("a", 129), "is not a container name"},
	})
	check(t, "DatabaseName", DatabaseName, []struct{ in, want string }{
		{"shop", ""}, {"shop_db-2", ""}, {strings.Repeat("d", 63), ""},
		{"", "is not a database name"}, {"shop.db", "is not a database name"}, {"$(id)", "is not a database name"},
		{strings.Repeat("d", 64), "is not a database name"},
		{strings.Repeat("x", 10000), "…"}, // a hostile value is cut short
	})
	check(t, "UpstreamName", UpstreamName, []struct{ in, want string }{
		{"app", ""}, {"app.v2_b-c", ""}, {strings.Repeat("u", 64), ""},
		{"", "is not an upstream name"}, {"app backend", "is not an upstream name"}, {"a;b", "is not an upstream name"},
		{strings.Repeat("u", 65), "is not an upstream name"},
	})
}

func TestServerAddress(t *testing.T) {
	check(t, "ServerAddress", ServerAddress, []struct{ in, want string }{
		{"10.0.0.1:80", ""},
		{"[::1]:8080", ""},
		{"web-1.internal:443", ""},
		{"my_service:8080", ""}, // Compose service names have underscores
		{"web:65535", ""},
		{"web", "is not host:port"},
		{"web:0", "is not from 1 to 65535"},
		{"web:65536", "is not from 1 to 65535"},
		{"web:+80", "is not a number"},
		{"web:http", "is not a number"},
		{":80", "neither an IP address nor a DNS name"},
		{"web;rm:80", "neither an IP address nor a DNS name"},
		{"-web:80", "neither an IP address nor a DNS name"},
		{"a..b:80", "neither an IP address nor a DNS name"},
		{strings.Repeat("a.", 127) + "ab:80", "neither an IP address nor a DNS name"},
	})
}

func TestText(t *testing.T) {
	const limit = 30
	check(t, "Text", func(s string) error { return Text(s, limit) }, []struct{ in, want string }{
		{"rolling out v2\tafter review", ""},
		{"", ""},
		{strings.Repeat("r", limit), ""},
		{strings.Repeat("r", limit+1), "31 bytes, at most 30 allowed"},
		{"a\nb", "control characters not allowed"},
		{"a\x00b", "control characters not allowed"},
	})
}

func TestLabels(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		max    int
		want   string
	}{
		{"valid", map[string]string{"env": "prod", "app.kubernetes.io/name": "web", "canary": ""}, 8, ""},
		{"value with a space", map[string]string{"env": "pr od"}, 8, `label "env": label value "pr od": character ' ' (U+0020) not allowed`},
		{"value with a semicolon", map[string]string{"env": "pr;od"}, 8, `label value "pr;od": character ';' not allowed`},
		{"non-ASCII value", map[string]string{"env": "prød"}, 8, `character 'ø' (U+00F8) not allowed (use ASCII letters`},
		{"non-breaking space in a key", map[string]string{"e\u00a0nv": "x"}, 8, `character '\u00a0' (U+00A0) not allowed`},
		{"invalid UTF-8", map[string]string{"env": "a\xffb"}, 8, `byte 0xFF (not UTF-8) not allowed`},
		{"empty key", map[string]string{"": "x"}, 8, "label key is empty"},
		{"key ending with a dot", map[string]string{"env.": "x"}, 8, "must start and end with a letter or digit"},
		{"value starting with a dash", map[string]string{"env": "-x"}, 8, "must start and end with a letter or digit"},
		{"long key", map[string]string{strings.Repeat("k", MaxLabelKeyLength+1): "x"}, 8, "at most 253 allowed"},
		{"long value", map[string]string{"k": strings.Repeat("v", MaxLabelValueLength+1)}, 8, "at most 253 allowed"},
		{"too many", map[string]string{"a": "1", "b": "2"}, 1, "2 labels, at most 1 allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Labels(tt.labels, tt.max)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Labels(%v) = %v, want %q", tt.labels, err, tt.want)
			}
		})
	}
}

func TestCharAt(t *testing.T) {
	tests := []struct {
		s    string
		i    int
		want string
	}{
		{"a b", 1, "character ' ' (U+0020)"},
		{"a;b", 1, "character ';'"},
		{"a\x7fb", 1, `character '\x7f' (U+007F)`},
		{"wéb", 1, "character 'é' (U+00E9)"},
		{"日本", 3, "character '本' (U+672C)"},
		{"x\u200by", 1, `character '\u200b' (U+200B)`},
		{"a\xffb", 1, "byte 0xFF (not UTF-8)"},
		{"\xc3", 0, "byte 0xC3 (not UTF-8)"},
	}
	for _, tt := range tests {
		if got := CharAt(tt.s, tt.i); got != tt.want {
			t.Errorf("CharAt(%q, %d) = %s, want %s", tt.s, tt.i, got, tt.want)
		}
	}
}

// A refused value is repeated at most maxQuoted bytes long between its
// quotes, however many of its bytes need an escape, and cut at a character.
func TestQuoteIsBounded(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"short", "web", `"web"`},
		{"exactly the limit", strings.Repeat("a", 64), `"` + strings.Repeat("a", 64) + `"`},
		{"long", strings.Repeat("a", 100), `"` + strings.Repeat("a", 64) + `"…`},
		{"escapes count as written", strings.Repeat("\x99", 22), `"` + strings.Repeat(`\x99`, 16) + `"…`},
		{"not inside a character", strings.Repeat("é", 40), `"` + strings.Repeat("é", 32) + `"…`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quote(tt.in); got != tt.want {
				t.Errorf("quote = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDurationAndTimestamp(t *testing.T) {
	durations := []struct {
		d    *durationpb.Duration
		want string
	}{
		{durationpb.New(90 * time.Second), ""},
		{&durationpb.Duration{Seconds: -1 << 40}, "not a valid duration (seconds -1099511627776, nanos 0)"},
		{&durationpb.Duration{Seconds: 1, Nanos: -1}, "of the same sign"},
		{&durationpb.Duration{Nanos: 2147483647}, "nanos 2147483647"},
		{nil, "not a valid duration"},
	}
	for _, tt := range durations {
		got, err := Duration(tt.d)
		if (tt.want == "") != (err == nil) || err != nil && (!strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "proto:")) {
			t.Errorf("Duration(%v) = %v, %v; want %q", tt.d, got, err, tt.want)
		}
		if err == nil && got != tt.d.AsDuration() {
			t.Errorf("Duration(%v) = %v", tt.d, got)
		}
	}
	stamps := []struct {
		ts   *timestamppb.Timestamp
		want string
	}{
		{timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)), ""},
		{&timestamppb.Timestamp{Seconds: 1 << 62}, "not a valid timestamp (seconds 4611686018427387904, nanos 0): between 0001-01-01 and 9999-12-31"},
		{&timestamppb.Timestamp{Seconds: 1, Nanos: -1}, "nanos -1"},
	}
	for _, tt := range stamps {
		got, err := Timestamp(tt.ts)
		if (tt.want == "") != (err == nil) || err != nil && (!strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "proto:")) {
			t.Errorf("Timestamp(%v) = %v, %v; want %q", tt.ts, got, err, tt.want)
		}
	}
}

func TestDestinationFields(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		ok   bool
	}{
		{"bucket", S3Bucket("flotilla-backups"), true},
		{"bucket too short", S3Bucket("ab"), false},
		{"bucket upper case", S3Bucket("Backups"), false},
		{"prefix", S3Prefix("prod/db-1/"), true},
		{"empty prefix", S3Prefix(""), true},
		{"prefix with ..", S3Prefix("prod/../etc"), false},
		{"prefix with leading /", S3Prefix("/prod"), false},
		{"prefix with a control character", S3Prefix("prod\n"), false},
		{"endpoint", S3Endpoint("minio.internal:9000"), true},
		{"endpoint with a scheme", S3Endpoint("https://s3.amazonaws.com"), false},
		{"backup name", BackupName("app-20261207T020000Z"), true},
		{"backup name with a slash", BackupName("../app"), false},
	} {
		if (tc.err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, tc.err, tc.ok)
		}
	}
}
