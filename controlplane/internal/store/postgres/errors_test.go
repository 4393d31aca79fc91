package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"flotilla.dev/controlplane/internal/store"
)

func TestWrapMarksOutagesUnavailable(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, true},
		{"starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"connection exception", &pgconn.PgError{Code: "08000"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"read-only after failover", &pgconn.PgError{Code: "25006"}, true},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"closed connection", pgconn.ErrConnClosed, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"not null violation", &pgconn.PgError{Code: "23502"}, false},
		{"wrong password", &pgconn.PgError{Code: "28P01"}, false},
		{"unknown database", &pgconn.PgError{Code: "3D000"}, false},
		{"caller cancelled", context.Canceled, false},
		{"caller deadline", context.DeadlineExceeded, false},
		{"other", errors.New("time out of range"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wrap(tt.err, "get agent %q", "web-1")
			if got := errors.Is(err, store.ErrUnavailable); got != tt.unavailable {
				t.Errorf("errors.Is(wrap(%v), ErrUnavailable) = %v, want %v", tt.err, got, tt.unavailable)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("wrap(%v) = %v, which does not wrap the cause", tt.err, err)
			}
		})
	}
}
