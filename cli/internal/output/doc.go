// Package output prints what the flotilla command shows: tables for people
// (the default), and for scripts the API's own messages as JSON (protojson,
// one object per line, nothing else on stdout) or YAML. It also holds the
// line diff that `service apply` shows.
package output
