package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"flotilla.dev/controlplane/internal/store"
)

// wrap returns err prefixed with "store: " and the formatted operation. An
// error that comes from the database being away also wraps
// store.ErrUnavailable.
func wrap(err error, format string, args ...any) error {
	op := fmt.Sprintf(format, args...)
	if isUnavailable(err) {
		return fmt.Errorf("store: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// unavailableCodes are SQLSTATEs that say the server is going away or not
// accepting work, rather than that the request is wrong.
var unavailableCodes = map[string]bool{
	"57P01": true, // admin_shutdown
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now (starting up, recovering)
	"57P05": true, // idle_session_timeout
	"53300": true, // too_many_connections
	"25006": true, // read_only_sql_transaction: a demoted primary after a failover
}

// isUnavailable reports whether err comes from the database being
// unreachable or going away: the same request may succeed later.
func isUnavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08 is connection exceptions. Wrong credentials (class 28)
		// or an unknown database (3D) are mistakes, not outages.
		return strings.HasPrefix(pgErr.Code, "08") || unavailableCodes[pgErr.Code]
	}
	// A connection that could not be made is an outage, even when it gave
	// up on a timeout (connect_timeout, a black-holed address).
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || pgconn.SafeToRetry(err) {
		return true
	}
	// The caller's own deadline or cancellation is not (context errors
	// are net.Errors too).
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var netErr net.Error
	switch {
	case errors.As(err, &netErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, pgconn.ErrConnClosed):
		return true
	}
	return false
}

// isConflict reports whether err is a PRIMARY KEY or UNIQUE violation.
func isConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// constraintOf returns the name of the constraint err violated, "" if none.
func constraintOf(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.ConstraintName
	}
	return ""
}

// passwordKeyword finds password=value in a keyword/value DSN.
var passwordKeyword = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// describeParseError says what is wrong with dsn from pgx's parse error,
// without the connection string (which holds the password) and with any
// password it can find in the rest blanked out.
func describeParseError(dsn string, err error) string {
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		// "cannot parse `<dsn, redacted>`: <what is wrong>"
		if i := strings.LastIndex(msg, "`: "); i >= 0 {
			msg = msg[i+3:]
		}
	}
	for _, secret := range passwordsIn(dsn) {
		msg = strings.ReplaceAll(msg, secret, "xxxxx")
	}
	return msg
}

// passwordsIn returns the passwords dsn may carry, as written.
func passwordsIn(dsn string) []string {
	var out []string
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			out = append(out, pw, url.QueryEscape(pw))
		}
	}
	for _, m := range passwordKeyword.FindAllStringSubmatch(dsn, -1) {
		out = append(out, strings.Trim(m[1], "'"))
	}
	return out
}

// found returns v from a single-row read of the row id names, or its error:
// ErrNotFound for no row, else err wrapped. Both name op ("get agent") and
// id.
func found[T any](v T, err error, op, id string) (T, error) {
	var zero T
	if errors.Is(err, pgx.ErrNoRows) {
		return zero, fmt.Errorf("store: %s %q: %w", op, id, store.ErrNotFound)
	}
	if err != nil {
		return zero, wrap(err, "%s %q", op, id)
	}
	return v, nil
}
