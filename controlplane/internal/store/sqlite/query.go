package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"flotilla.dev/controlplane/internal/store"
)

// queryer is what *sql.DB and *sql.Tx share for queries.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryAll runs query on db and scans every row with scan. A failure names
// op ("list agents") so the error reads "store: list agents: …".
func queryAll[T any](ctx context.Context, db queryer, op string, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	return out, nil
}

// listQuery builds a list query: the conditions in where joined with AND,
// then orderBy, then LIMIT when limit is positive (its argument appended to
// args). It returns the query and its arguments.
func listQuery(selectFrom string, where []string, args []any, orderBy string, limit int) (string, []any) {
	query := selectFrom
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY " + orderBy
	if limit > 0 {
		query += " LIMIT ?"
		args = append(args, limit)
	}
	return query, args
}

// inList returns the condition "column IN (?, …)" for values and appends
// the values to args.
func inList[T any](column string, values []T, args []any) (string, []any) {
	for _, v := range values {
		args = append(args, v)
	}
	return column + " IN (?" + strings.Repeat(", ?", len(values)-1) + ")", args
}

// found returns v from a single-row read of the row id names, or its error:
// ErrNotFound for no row, else err. Both name op ("get agent") and id.
func found[T any](v T, err error, op, id string) (T, error) {
	var zero T
	if errors.Is(err, sql.ErrNoRows) {
		return zero, fmt.Errorf("store: %s %q: %w", op, id, store.ErrNotFound)
	}
	if err != nil {
		return zero, fmt.Errorf("store: %s %q: %w", op, id, err)
	}
	return v, nil
}
