// Package validate holds the grammar of the names and values both programs
// accept in commands, services and agent registrations: image references,
// container, database and upstream names, host:port server addresses,
// label keys and values, and bounded free text.
//
// Each function returns an error that says why a value is refused without
// naming the field: the caller knows the field and names it in its own
// error (the control plane as an InvalidArgument status, the agent as a
// rejection or a configuration error). Values are quoted with %q and cut
// short, so a hostile value never makes a long or multi-line message.
package validate

import (
	"strconv"
	"unicode/utf8"
)

// maxQuoted bounds how much of a refused value a message repeats, quoted:
// a byte that needs an escape counts as the four it takes (\x99).
const maxQuoted = 64

// quote formats s for a message as a Go string literal of at most
// maxQuoted bytes between its quotes, cut at a character and marked "…"
// when s is longer.
func quote(s string) string {
	if q := strconv.Quote(s); len(q) <= maxQuoted+2 {
		return q
	}
	cut := s[:min(len(s), maxQuoted)]
	for len(strconv.Quote(cut)) > maxQuoted+2 {
		_, size := utf8.DecodeLastRuneInString(cut)
		cut = cut[:len(cut)-size]
	}
	return strconv.Quote(cut) + "…"
}

// Quote is how a message repeats a refused value: a Go string literal of at
// most 64 bytes between its quotes, cut at a character and marked "…" when
// the value is longer, so that a huge or hostile value never makes a huge
// error.
func Quote(s string) string { return quote(s) }
