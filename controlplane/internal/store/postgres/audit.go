package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

const auditColumns = store.AuditColumns

// AppendAuditEvent inserts e and returns the ID the store gave it.
func (s *Store) AppendAuditEvent(ctx context.Context, e store.AuditEvent) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx,
		`INSERT INTO audit_events (at, principal, role, method, request, peer, code, message, duration_ns, request_id)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
		timeArg(e.At), e.Principal, e.Role, e.Method, e.Request, e.Peer, e.Code, e.Message, int64(e.Duration), e.RequestID).Scan(&id)
	if err != nil {
		return 0, wrap(err, "append audit event")
	}
	return id, nil
}

// FinishAuditEvent records the outcome of the call event id describes.
func (s *Store) FinishAuditEvent(ctx context.Context, id int64, code, message string, duration time.Duration) error {
	tag, err := s.pool.Exec(ctx, `UPDATE audit_events SET code = $1, message = $2, duration_ns = $3 WHERE id = $4`,
		code, message, int64(duration), id)
	if err != nil {
		return wrap(err, "finish audit event %d", id)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: finish audit event %d: %w", id, store.ErrNotFound)
	}
	return nil
}

// ListAuditEvents returns the events q selects, newest first.
func (s *Store) ListAuditEvents(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error) {
	var w where
	if q.Principal != "" {
		w.add("principal = ?", q.Principal)
	}
	if q.Method != "" {
		w.add("method = ?", q.Method)
	}
	if q.RequestID != "" {
		w.add("request_id = ?", q.RequestID)
	}
	if q.FailedOnly {
		w.add("code NOT IN ('', 'OK')")
	}
	if !q.Since.IsZero() {
		w.add("at >= ?", timeArg(q.Since))
	}
	if q.BeforeID > 0 {
		w.add("id < ?", q.BeforeID)
	}
	query, args := w.query(`SELECT `+auditColumns+` FROM audit_events`, "id DESC", q.Limit)
	return queryAll(ctx, s.pool, "list audit events", scanAuditEvent, query, args...)
}

func scanAuditEvent(row pgx.Row) (store.AuditEvent, error) {
	var e store.AuditEvent
	var d int64
	err := row.Scan(&e.ID, timeCol{&e.At}, &e.Principal, &e.Role, &e.Method, &e.Request, &e.Peer, &e.Code, &e.Message, &d, &e.RequestID)
	e.Duration = time.Duration(d)
	return e, err
}

// where builds a WHERE clause from conditions written with ? for each
// argument, numbering the placeholders $1, $2… in order.
type where struct {
	conds []string
	args  []any
}

// add appends a condition and its arguments.
func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", fmt.Sprintf("$%d", len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

// in appends "column IN (…)" for values.
func (w *where) in(column string, values []int32) {
	ph := make([]string, len(values))
	for i := range values {
		ph[i] = "?"
	}
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	w.add(column+" IN ("+strings.Join(ph, ", ")+")", args...)
}

// query returns selectFrom with the conditions, the order and the limit
// (none when 0), and the arguments.
func (w *where) query(selectFrom, orderBy string, limit int) (string, []any) {
	q := selectFrom
	if len(w.conds) > 0 {
		q += " WHERE " + strings.Join(w.conds, " AND ")
	}
	q += " ORDER BY " + orderBy
	args := w.args
	if limit > 0 {
		args = append(args, limit)
		q += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	return q, args
}
