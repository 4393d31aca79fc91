package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"flotilla.dev/controlplane/internal/fsutil"
)

// Store drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// defaultMaxConns is the PostgreSQL pool size unless store.max_conns says
// otherwise; maxMaxConns bounds it well under a database's usual
// max_connections.
const (
	defaultMaxConns = 10
	maxMaxConns     = 1000
)

// defaultLeaseTTL is a replica's leases on a PostgreSQL store
// (store.lease_ttl): the keeper renews them every twentieth and gives up 4/5
// of one after its last renewal, so a database outage shorter than about
// 7/10 of it (7 s of 10 s) is ridden out whenever it starts, and another
// replica takes a dead one's work over at most this long after it died.
const (
	defaultLeaseTTL = 10 * time.Second
	minLeaseTTL     = 3 * time.Second
	maxLeaseTTL     = 10 * time.Minute
)

// redacted stands in for a password in anything that is logged or shown.
const redacted = "xxxxx"

func (s Store) validate() error {
	switch s.Driver {
	case DriverSQLite:
		if s.DSN != "" {
			return errors.New("store.dsn: set, but store.driver is sqlite; set store.driver to postgres or remove the DSN")
		}
		if s.PasswordFile != "" {
			return errors.New("store.password_file: set, but store.driver is sqlite; set store.driver to postgres or remove it")
		}
		return nil
	case DriverPostgres:
	default:
		return fmt.Errorf("store.driver: %q is not one of sqlite, postgres", s.Driver)
	}
	if s.DSN == "" {
		return errors.New("store.dsn: required when store.driver is postgres (flag -store-dsn or FLOTILLA_STORE_DSN)")
	}
	d, err := parseDSN(s.DSN)
	if err != nil {
		return fmt.Errorf("store.dsn: %w", err)
	}
	if s.MaxConns < 1 || s.MaxConns > maxMaxConns {
		return fmt.Errorf("store.max_conns: %d must be between 1 and %d", s.MaxConns, maxMaxConns)
	}
	if ttl := s.LeaseTTL.Std(); ttl < minLeaseTTL || ttl > maxLeaseTTL {
		return fmt.Errorf("store.lease_ttl: %s must be between %s and %s", ttl, minLeaseTTL, maxLeaseTTL)
	}
	if s.PasswordFile == "" {
		return nil
	}
	if d.hasPassword() {
		return errors.New("store.dsn: carries a password while store.password_file is set too; keep the password in the file only")
	}
	_, err = s.readPassword()
	return err
}

// readPassword reads the password file: its first line, without the line
// ending. The file must not be readable by group or others.
func (s Store) readPassword() (string, error) {
	b, err := fsutil.ReadSecretFile(s.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("store.password_file: %w", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("store.password_file: %s is empty", s.PasswordFile)
	}
	return pw, nil
}

// ConnString returns the PostgreSQL connection string to open the store
// with: the DSN with the password from store.password_file, when set, put
// in. Never log it; log RedactedDSN instead.
func (s Store) ConnString() (string, error) {
	d, err := parseDSN(s.DSN)
	if err != nil {
		return "", fmt.Errorf("store.dsn: %w", err)
	}
	if s.PasswordFile == "" {
		return s.DSN, nil
	}
	pw, err := s.readPassword()
	if err != nil {
		return "", err
	}
	return d.withPassword(pw), nil
}

// RedactedDSN is the DSN with any password replaced by xxxxx, for logs and
// error messages.
func (s Store) RedactedDSN() string {
	d, err := parseDSN(s.DSN)
	if err != nil {
		return "(unparsable DSN, not shown)"
	}
	if !d.hasPassword() {
		return s.DSN
	}
	return d.withPassword(redacted)
}

// dsn is a parsed connection string in either of libpq's forms.
type dsn struct {
	url    *url.URL  // postgres://user:password@host/db?…
	fields []kvField // host=… user=… password=…
}

type kvField struct{ key, value string }

// parseDSN parses the URL form (postgres:// or postgresql://) or the
// keyword/value form. Its errors never quote the DSN, which may hold a
// password.
func parseDSN(s string) (dsn, error) {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return dsn{}, errors.New("not a valid postgres:// URL")
		}
		return dsn{url: u}, nil
	}
	if strings.Contains(s, "://") {
		return dsn{}, errors.New("a URL must start with postgres:// or postgresql://")
	}
	fields, err := parseKeywordValue(s)
	if err != nil {
		return dsn{}, err
	}
	return dsn{fields: fields}, nil
}

func (d dsn) hasPassword() bool {
	if d.url != nil {
		_, inUser := d.url.User.Password()
		return inUser || d.url.Query().Has("password")
	}
	for _, f := range d.fields {
		if f.key == "password" {
			return true
		}
	}
	return false
}

// withPassword renders the DSN with pw as its only password.
func (d dsn) withPassword(pw string) string {
	if d.url != nil {
		u := *d.url
		q := u.Query()
		if q.Has("password") {
			q.Del("password")
			u.RawQuery = q.Encode()
		}
		u.User = url.UserPassword(u.User.Username(), pw)
		return u.String()
	}
	parts := make([]string, 0, len(d.fields)+1)
	for _, f := range d.fields {
		if f.key != "password" {
			parts = append(parts, f.key+"="+quoteKV(f.value))
		}
	}
	return strings.Join(append(parts, "password="+quoteKV(pw)), " ")
}

// parseKeywordValue parses libpq's "key=value key='quoted value'" form.
func parseKeywordValue(s string) ([]kvField, error) {
	var fields []kvField
	rest := strings.TrimSpace(s)
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return nil, errors.New("not a postgres:// URL and not key=value pairs (e.g. host=db user=flotilla dbname=flotilla)")
		}
		key := strings.TrimSpace(rest[:eq])
		if key == "" || strings.ContainsAny(key, " \t'") {
			return nil, errors.New("a key=value pair has a malformed key")
		}
		value, next, err := readKVValue(strings.TrimLeft(rest[eq+1:], " \t"))
		if err != nil {
			return nil, fmt.Errorf("the value of %s: %w", key, err)
		}
		fields = append(fields, kvField{key, value})
		rest = strings.TrimLeft(next, " \t\n")
	}
	if len(fields) == 0 {
		return nil, errors.New("empty")
	}
	return fields, nil
}

// readKVValue reads one value, quoted or not, and returns what follows it.
func readKVValue(s string) (value, rest string, err error) {
	if !strings.HasPrefix(s, "'") {
		end := strings.IndexAny(s, " \t\n")
		if end < 0 {
			end = len(s)
		}
		return unescapeKV(s[:end]), s[end:], nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == '\'':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated quote")
}

func unescapeKV(s string) string {
	return strings.NewReplacer(`\\`, `\`, `\'`, `'`).Replace(s)
}

// quoteKV quotes a value for the keyword/value form.
func quoteKV(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
