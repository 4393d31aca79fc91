package backup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestResolveBinary(t *testing.T) {
	lib := t.TempDir()
	for _, v := range []string{"9.6", "13", "15", "16"} {
		if err := os.MkdirAll(filepath.Join(lib, v, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fakeBinary(t, filepath.Join(lib, "9.6", "bin"), "pg_dump")
	fakeBinary(t, filepath.Join(lib, "13", "bin"), "pg_dump")
	fakeBinary(t, filepath.Join(lib, "15", "bin"), "pg_dump")
	// 16 has a pg_dump that is not executable: skipped.
	if err := os.WriteFile(filepath.Join(lib, "16", "bin", "pg_dump"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	configured := fakeBinary(t, t.TempDir(), "my_pg_dump")
	t.Setenv("PATH", t.TempDir()) // nothing in PATH

	tests := []struct {
		name, configured, want, wantErr string
	}{
		{name: "newest installed version", want: filepath.Join(lib, "15", "bin", "pg_dump")},
		{name: "configured path wins", configured: configured, want: configured},
		{name: "configured path missing", configured: "/nonexistent/pg_dump", wantErr: "backup.pg_dump:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveBinary(tt.configured, "pg_dump", lib)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolveBinary = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("resolveBinary = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := resolveBinary("", "pg_restore", lib); err == nil || !strings.Contains(err.Error(), "set backup.pg_restore") {
		t.Errorf("resolveBinary(pg_restore) = %v, want an error that says how to fix it", err)
	}
}

func TestParseTOC(t *testing.T) {
	list := `;
; Archive created at 2026-01-01 00:00:00 UTC
;     dbname: appdb
;     TOC Entries: 11
;     Dumped from database version: 15.18 (Debian 15.18-0+deb12u1)
;     Dumped by pg_dump version: 15.18 (Debian 15.18-0+deb12u1)
;
; Selected TOC Entries:
;
214; 1259 16387 TABLE public customers postgres
3347; 0 16387 TABLE DATA public customers postgres

3201; 2606 16393 CONSTRAINT public customers customers_pkey postgres
`
	entries, version := parseTOC(list)
	if entries != 3 || version != "15.18 (Debian 15.18-0+deb12u1)" {
		t.Errorf("parseTOC = %d, %q; want 3, %q", entries, version, "15.18 (Debian 15.18-0+deb12u1)")
	}
	if entries, version := parseTOC(";\n; Selected TOC Entries:\n;\n"); entries != 0 || version != "" {
		t.Errorf("parseTOC(header only) = %d, %q; want 0, empty", entries, version)
	}
}

func TestTailWriter(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"short", 100, []string{"a\n", "b\n"}, "a; b"},
		{"keeps the last lines", 100, []string{"1\n2\n3\n4\n5\n6\n7\n"}, "3; 4; 5; 6; 7"},
		{"keeps a whole line at the cut", 6, []string{"first line\nab\ncd\n"}, "ab; cd"},
		{"drops a cut line", 6, []string{"first line\nxab\ncd\n"}, "cd"},
		{"cut over several writes", 4, []string{"abc", "def\ng"}, "g"},
		{"skips blank lines", 100, []string{"a\n\n  \nb"}, "a; b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &tailWriter{max: tt.max}
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if got := w.lastLines(5); got != tt.want {
				t.Errorf("lastLines = %q, want %q", got, tt.want)
			}
			if len(w.buf) > tt.max {
				t.Errorf("kept %d bytes, max %d", len(w.buf), tt.max)
			}
		})
	}
}

func TestReadPassword(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		mode          os.FileMode
		want, wantErr string
	}{
		{name: "plain", content: "pw", mode: 0o600, want: "pw"},
		{name: "trailing newline", content: "pw\n", mode: 0o400, want: "pw"},
		{name: "trailing CRLF", content: "pw\r\n", mode: 0o600, want: "pw"},
		{name: "spaces kept", content: " p w ", mode: 0o600, want: " p w "},
		{name: "group readable", content: "pw", mode: 0o640, wantErr: "chmod 600"},
		{name: "empty", content: "\n", mode: 0o600, wantErr: "is empty"},
		{name: "two lines", content: "pw\nmore\n", mode: 0o600, wantErr: "more than one line"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.Repeat("p", i+1))
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := readPassword(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readPassword = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pw") && !strings.Contains(path, "pw") {
					t.Errorf("the error shows the file's content: %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("readPassword = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := readPassword(filepath.Join(dir, "missing")); err == nil {
		t.Error("readPassword(missing file) = nil error")
	}
}

func TestWritePassfile(t *testing.T) {
	parent := t.TempDir()
	pf, err := writePassfile(parent, `a:b\c`)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(pf.path)
	if err != nil {
		t.Fatal(err)
	}
	if want := `*:*:*:*:a\:b\\c` + "\n"; string(data) != want {
		t.Errorf("passfile = %q, want %q", data, want)
	}
	for path, want := range map[string]os.FileMode{pf.path: 0o600, pf.dir: 0o700} {
		if got := fileMode(t, path); got != want {
			t.Errorf("mode of %s = %v, want %v", path, got, want)
		}
	}
	if err := pf.remove(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("left after remove: %v", left)
	}
}

func TestProgressCounter(t *testing.T) {
	clock := clockwork.NewFakeClock()
	var reports []uint64
	c := newProgressCounter(clock, time.Second, func(n uint64) { reports = append(reports, n) })
	write := func(n int) {
		if _, err := c.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	write(10) // first write: reported
	write(10) // same instant: throttled
	clock.Advance(999 * time.Millisecond)
	write(10) // throttled
	clock.Advance(time.Millisecond)
	write(10) // a second after the last report
	c.flush()
	want := []uint64{10, 40, 40}
	if len(reports) != len(want) {
		t.Fatalf("reports = %v, want %v", reports, want)
	}
	for i := range want {
		if reports[i] != want[i] {
			t.Fatalf("reports = %v, want %v", reports, want)
		}
	}
}
