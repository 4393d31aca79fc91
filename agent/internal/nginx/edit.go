package nginx

import (
	"bytes"
	"errors"
	"slices"
)

var (
	// errBlockNotFound: the file has no upstream block of the requested name.
	errBlockNotFound = errors.New("upstream block not found")
	// errServerNotFound: no upstream block of the file lists the server.
	errServerNotFound = errors.New("server not found")
)

// editOutcome is the result of editUpstream.
type editOutcome struct {
	// content is the new file; equal to the input when nothing changed.
	content []byte
	changed bool
	// blocks are the upstream blocks that list the server ("" for a
	// fragment's top level).
	blocks []string
	// allDown are the blocks among them whose every server is down after
	// the edit: the upstream serves nothing.
	allDown []string
}

// splice replaces src[start:end] with text.
type splice struct {
	start, end int
	text       string
}

// editUpstream marks server down (down=true) or up in the upstream blocks
// of src, restricted to the block named block when it is not empty. Only
// the bytes of the "down" parameter change; comments, other parameters and
// formatting stay as they were.
func editUpstream(src []byte, block, server string, down bool) (editOutcome, error) {
	blocks, err := parseUpstreams(src)
	if err != nil {
		return editOutcome{}, err
	}
	var out editOutcome
	var edits []splice
	blockSeen := false
	for _, b := range blocks {
		if block != "" && b.name != block {
			continue
		}
		blockSeen = true
		found, othersUp := false, false
		for _, d := range b.servers {
			if d.address.value != server {
				othersUp = othersUp || !d.down()
				continue
			}
			found = true
			edits = append(edits, editDirective(src, d, down)...)
		}
		if !found {
			continue
		}
		out.blocks = append(out.blocks, b.name)
		if down && !othersUp {
			out.allDown = append(out.allDown, b.name)
		}
	}
	switch {
	case block != "" && !blockSeen:
		return editOutcome{}, errBlockNotFound
	case len(out.blocks) == 0:
		return editOutcome{}, errServerNotFound
	}
	out.content = applySplices(src, edits)
	out.changed = len(edits) > 0
	return out, nil
}

// editDirective returns the splices that put d in the requested state.
func editDirective(src []byte, d serverDirective, down bool) []splice {
	if down {
		if d.down() {
			return nil
		}
		last := d.address
		if len(d.params) > 0 {
			last = d.params[len(d.params)-1]
		}
		return []splice{{start: last.end, end: last.end, text: " down"}}
	}
	var edits []splice
	for _, p := range d.params {
		if p.value == "down" {
			start, end := removalSpan(src, p)
			edits = append(edits, splice{start: start, end: end})
		}
	}
	return edits
}

// removalSpan is the span to delete to remove the parameter tok: the token
// with the blanks before it on its line ("a:80 down;" → "a:80;"), or its
// whole line when it stands alone on one.
func removalSpan(src []byte, tok token) (start, end int) {
	start, end = tok.start, tok.end
	for start > 0 && isBlank(src[start-1]) {
		start--
	}
	if start > 0 && src[start-1] != '\n' {
		return start, end
	}
	// The token begins its line: drop the line if nothing else is on it.
	lineEnd := end
	for lineEnd < len(src) && isBlank(src[lineEnd]) {
		lineEnd++
	}
	if lineEnd < len(src) && src[lineEnd] == '\n' {
		return start, lineEnd + 1
	}
	return tok.start, lineEnd
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// applySplices applies non-overlapping splices to a copy of src.
func applySplices(src []byte, edits []splice) []byte {
	out := bytes.Clone(src)
	slices.SortFunc(edits, func(a, b splice) int { return b.start - a.start })
	for _, e := range edits {
		out = slices.Concat(out[:e.start], []byte(e.text), out[e.end:])
	}
	return out
}
