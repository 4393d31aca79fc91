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

import "fmt"

// maxQuoted bounds how much of a refused value a message repeats.
const maxQuoted = 64

// quote formats s for a message: %q, cut to maxQuoted bytes.
func quote(s string) string {
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q…", s[:maxQuoted])
	}
	return fmt.Sprintf("%q", s)
}
