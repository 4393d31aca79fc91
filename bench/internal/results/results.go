package results

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Met says whether a figure reached its target.
type Met string

const (
	Yes Met = "yes"
	No  Met = "no"
	// NA: the figure has no target, or the run was smaller than the fleet
	// the target is stated for, so it cannot tell.
	NA Met = "n/a"
)

// MetIf is Yes when ok, No otherwise.
func MetIf(ok bool) Met {
	if ok {
		return Yes
	}
	return No
}

// Figure is one measured figure.
type Figure struct {
	// Name says what was measured, e.g. "connect: control-plane RSS per agent".
	Name string
	// Agents is the fleet size the figure was measured at.
	Agents int
	// Value is the measurement with its unit.
	Value string
	// Target is the goal from issue 7, or "—".
	Target string
	Met    Met
	// Notes hold the conditions a reader needs to compare runs.
	Notes string
}

// Row is a figure with the run's context.
type Row struct {
	Time    time.Time
	Commit  string
	Machine string
	Figure
}

// Header starts a new results file.
const Header = `# Benchmark results

Rows are appended by ` + "`flotilla-bench`" + ` (bench/cmd/flotilla-bench; ` + "`make bench`" + ` runs
a quick version of every figure). Targets are those of issue 7. "met" is n/a
when the figure has no target or the run was smaller than the fleet the
target is stated for. RSS is read from /proc, CPU from the process's own
accounting (utime+stime), latencies are nearest-rank percentiles.

| date (UTC) | commit | machine | figure | agents | value | target | met | notes |
|---|---|---|---|---|---|---|---|---|
`

// Format renders a row as one markdown table line.
func Format(r Row) string {
	cells := []string{
		r.Time.UTC().Format("2006-01-02 15:04"),
		r.Commit, r.Machine, r.Name, fmt.Sprint(r.Agents), r.Value, r.Target, string(r.Met), r.Notes,
	}
	for i, c := range cells {
		cells[i] = cell(c)
	}
	return "| " + strings.Join(cells, " | ") + " |\n"
}

// cell makes s safe inside a table cell: one line, pipes escaped, never
// empty (an empty cell reads as a mistake).
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", `\|`)
	if s == "" {
		return "—"
	}
	return s
}

// Append adds rows to the results file at path, writing the header first
// when the file does not exist or is empty.
func Append(path string, rows []Row) error {
	var buf bytes.Buffer
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		buf.WriteString(Header)
	case err != nil:
		return fmt.Errorf("results file: %w", err)
	case info.Size() == 0:
		buf.WriteString(Header)
	default:
		// A file whose last line lacks its newline would glue the first
		// new row to it.
		last, err := lastByte(path)
		if err != nil {
			return fmt.Errorf("results file: %w", err)
		}
		if last != '\n' {
			buf.WriteByte('\n')
		}
	}
	for _, r := range rows {
		buf.WriteString(Format(r))
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("results file: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("results file %s: %w", path, err)
	}
	return f.Close()
}

func lastByte(path string) (byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, info.Size()-1); err != nil {
		return 0, err
	}
	return b[0], nil
}

// Commit names the checkout in dir: the short commit, with "+dirty" when
// tracked or untracked files differ from it. The results file itself is
// left out: every run changes it. "unknown" outside a git checkout.
func Commit(dir, resultsPath string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	args := []string{"-C", dir, "status", "--porcelain", "--", "."}
	if resultsPath != "" {
		args = append(args, ":(exclude)"+resultsPath)
	}
	status, err := exec.Command("git", args...).Output()
	if err != nil || len(bytes.TrimSpace(status)) > 0 {
		commit += "+dirty"
	}
	return commit
}
