package promtext

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Read returns the samples of the metrics named in names, keyed by the
// series as exposed: the name with its labels, e.g.
// `flotilla_agents{state="connected"}`, or the bare name for a series
// without labels.
func Read(r io.Reader, names ...string) (map[string]float64, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	br := bufio.NewReaderSize(r, 64<<10)
	lineNo := 0
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			lineNo++
			if perr := parseLine(strings.TrimRight(line, "\r\n"), want, out); perr != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo, perr)
			}
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func parseLine(line string, want map[string]bool, out map[string]float64) error {
	if line == "" || line[0] == '#' {
		return nil
	}
	nameEnd := strings.IndexAny(line, "{ ")
	if nameEnd < 0 {
		return fmt.Errorf("%q has no value", line)
	}
	if !want[line[:nameEnd]] {
		return nil
	}
	// The series ends at the closing brace of its labels, or at the name.
	seriesEnd := nameEnd
	if line[nameEnd] == '{' {
		close := labelsEnd(line, nameEnd)
		if close < 0 {
			return fmt.Errorf("%q: labels not closed", line)
		}
		seriesEnd = close + 1
	}
	fields := strings.Fields(line[seriesEnd:])
	if len(fields) < 1 || len(fields) > 2 { // value and an optional timestamp
		return fmt.Errorf("%q: want a value and an optional timestamp", line)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return fmt.Errorf("%q: value: %w", line, err)
	}
	out[line[:seriesEnd]] = v
	return nil
}

// labelsEnd returns the index of the '}' closing the labels that open at
// line[open], skipping quoted label values (which may hold '}' and
// escaped quotes).
func labelsEnd(line string, open int) int {
	quoted := false
	for i := open + 1; i < len(line); i++ {
		switch c := line[i]; {
		case quoted && c == '\\':
			i++ // the escaped character
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i
		}
	}
	return -1
}
