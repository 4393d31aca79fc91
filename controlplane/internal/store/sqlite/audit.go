package sqlite

import (
	"context"
	"fmt"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

const auditColumns = store.AuditColumns

// AppendAuditEvent inserts e and returns the ID the store gave it.
func (s *Store) AppendAuditEvent(ctx context.Context, e store.AuditEvent) (int64, error) {
	res, err := s.write.ExecContext(ctx,
		`INSERT INTO audit_events (at, principal, role, method, request, peer, code, message, duration_ns, request_id)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		timeArg(e.At), e.Principal, e.Role, e.Method, e.Request, e.Peer, e.Code, e.Message, int64(e.Duration), e.RequestID)
	if err != nil {
		return 0, fmt.Errorf("store: append audit event: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("store: append audit event: %w", err)
	}
	return id, nil
}

// FinishAuditEvent records the outcome of the call event id describes.
func (s *Store) FinishAuditEvent(ctx context.Context, id int64, code, message string, duration time.Duration) error {
	res, err := s.write.ExecContext(ctx, `UPDATE audit_events SET code = ?, message = ?, duration_ns = ? WHERE id = ?`,
		code, message, int64(duration), id)
	if err != nil {
		return fmt.Errorf("store: finish audit event %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: finish audit event %d: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("store: finish audit event %d: %w", id, store.ErrNotFound)
	}
	return nil
}

// ListAuditEvents returns the events q selects, newest first.
func (s *Store) ListAuditEvents(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error) {
	var where []string
	var args []any
	if q.Principal != "" {
		where, args = append(where, "principal = ?"), append(args, q.Principal)
	}
	if q.Method != "" {
		where, args = append(where, "method = ?"), append(args, q.Method)
	}
	if q.RequestID != "" {
		where, args = append(where, "request_id = ?"), append(args, q.RequestID)
	}
	if q.FailedOnly {
		where = append(where, "code NOT IN ('', 'OK')")
	}
	if !q.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, timeArg(q.Since))
	}
	if q.BeforeID > 0 {
		where, args = append(where, "id < ?"), append(args, q.BeforeID)
	}
	query, args := listQuery(`SELECT `+auditColumns+` FROM audit_events`, where, args, "id DESC", q.Limit)
	return queryAll(ctx, s.read, "list audit events", scanAuditEvent, query, args...)
}

func scanAuditEvent(row rowScanner) (store.AuditEvent, error) {
	var e store.AuditEvent
	var d int64
	err := row.Scan(&e.ID, timeCol{&e.At}, &e.Principal, &e.Role, &e.Method, &e.Request, &e.Peer,
		&e.Code, &e.Message, &d, &e.RequestID)
	e.Duration = time.Duration(d)
	return e, err
}
