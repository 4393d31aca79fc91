package results

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func row(name, value string) Row {
	return Row{
		Time: time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600)), Commit: "abc1234+dirty",
		Machine: "AMD EPYC, 2 cores, 23.5 GiB",
		Figure:  Figure{Name: name, Agents: 500, Value: value, Target: "≤ 64 KiB", Met: Yes, Notes: "heartbeat 10s"},
	}
}

func TestFormat(t *testing.T) {
	got := Format(row("connect: RSS per agent", "41.2 KiB"))
	want := "| 2026-03-04 04:06 | abc1234+dirty | AMD EPYC, 2 cores, 23.5 GiB | connect: RSS per agent | 500 | 41.2 KiB | ≤ 64 KiB | yes | heartbeat 10s |\n"
	if got != want {
		t.Errorf("Format =\n%q\nwant\n%q", got, want)
	}
}

func TestFormatKeepsTheTableWellFormed(t *testing.T) {
	r := row("a|b", "line one\nline two")
	r.Notes = ""
	got := Format(r)
	if strings.Count(got, "\n") != 1 {
		t.Errorf("a newline in a value broke the row: %q", got)
	}
	if !strings.Contains(got, `| a\|b |`) {
		t.Errorf("the pipe in the figure name was not escaped: %q", got)
	}
	if !strings.Contains(got, "| line one line two |") {
		t.Errorf("the value was not joined onto one line: %q", got)
	}
	if !strings.HasSuffix(got, "| — |\n") {
		t.Errorf("an empty notes cell was not marked: %q", got)
	}
	// 9 columns: 10 unescaped pipes.
	if n := strings.Count(strings.ReplaceAll(got, `\|`, ""), "|"); n != 10 {
		t.Errorf("row has %d cell separators, want 10: %q", n, got)
	}
}

func TestAppendWritesTheHeaderOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.md")
	if err := Append(path, []Row{row("first", "1 s")}); err != nil {
		t.Fatal(err)
	}
	if err := Append(path, []Row{row("second", "2 s"), row("third", "3 s")}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if !strings.HasPrefix(text, Header) {
		t.Errorf("file does not start with the header:\n%s", text)
	}
	if strings.Count(text, "| date (UTC) |") != 1 {
		t.Errorf("header written more than once:\n%s", text)
	}
	rows := strings.Split(strings.TrimPrefix(text, Header), "\n")
	if len(rows) != 4 || rows[3] != "" {
		t.Fatalf("want 3 rows and a final newline, got %q", rows)
	}
	for i, name := range []string{"first", "second", "third"} {
		if !strings.Contains(rows[i], "| "+name+" |") {
			t.Errorf("row %d = %q, want figure %q", i, rows[i], name)
		}
	}
}

func TestAppendRepairsAMissingFinalNewline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.md")
	if err := os.WriteFile(path, []byte(Header+"| old row |"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Append(path, []Row{row("new", "1 s")}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "| old row |\n| 2026-") {
		t.Errorf("new row glued to the old one:\n%s", b)
	}
}

func TestAppendEmptyFileGetsHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.md")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Append(path, []Row{row("x", "1 s")}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), Header) {
		t.Errorf("empty file did not get the header:\n%s", b)
	}
}

func TestMetIf(t *testing.T) {
	if MetIf(true) != Yes || MetIf(false) != No {
		t.Errorf("MetIf(true) = %q, MetIf(false) = %q", MetIf(true), MetIf(false))
	}
}

func TestCommit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	if got := Commit(dir, ""); got != "unknown" {
		t.Errorf("Commit outside a checkout = %q, want unknown", got)
	}
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "a")
	git("commit", "-q", "-m", "a")
	clean := Commit(dir, "results.md")
	if clean == "unknown" || strings.HasSuffix(clean, "+dirty") {
		t.Fatalf("Commit of a clean checkout = %q", clean)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte("rows"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Commit(dir, "results.md"); got != clean {
		t.Errorf("the results file made the checkout dirty: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Commit(dir, "results.md"); got != clean+"+dirty" {
		t.Errorf("Commit of a changed checkout = %q, want %q", got, clean+"+dirty")
	}
}
