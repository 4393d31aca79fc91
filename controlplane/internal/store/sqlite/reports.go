package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// AddCommandReports appends reports in one transaction, in order.
func (s *Store) AddCommandReports(ctx context.Context, reports []store.CommandReport) error {
	if len(reports) == 0 {
		return nil
	}
	return s.inWriteTx(ctx, "add command reports", func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO command_reports (command_id, agent_id, event, received_at) VALUES (?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("store: add command reports: %w", err)
		}
		defer stmt.Close()
		for _, r := range reports {
			if _, err := stmt.ExecContext(ctx, r.CommandID, r.AgentID, blobArg(r.Event), timeArg(r.ReceivedAt)); err != nil {
				return fmt.Errorf("store: add command report for %q: %w", r.CommandID, err)
			}
		}
		return nil
	})
}

// ListCommandReports returns the reports after afterSeq, by seq.
func (s *Store) ListCommandReports(ctx context.Context, afterSeq int64, limit int) ([]store.CommandReport, error) {
	query, args := listQuery(`SELECT `+store.CommandReportColumns+` FROM command_reports`, []string{"seq > ?"}, []any{afterSeq}, "seq", limit)
	return queryAll(ctx, s.read, "list command reports", scanCommandReport, query, args...)
}

// ListCommandReportsFor returns the reports about commandIDs, by seq.
func (s *Store) ListCommandReportsFor(ctx context.Context, commandIDs []string) ([]store.CommandReport, error) {
	var out []store.CommandReport
	for len(commandIDs) > 0 {
		n := min(len(commandIDs), 500)
		cond, args := inList("command_id", commandIDs[:n], nil)
		query, args := listQuery(`SELECT `+store.CommandReportColumns+` FROM command_reports`, []string{cond}, args, "seq", 0)
		page, err := queryAll(ctx, s.read, "list command reports", scanCommandReport, query, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		commandIDs = commandIDs[n:]
	}
	slices.SortFunc(out, func(a, b store.CommandReport) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// PruneCommandReports deletes the reports of commands finished before
// finishedBefore or gone.
func (s *Store) PruneCommandReports(ctx context.Context, finishedBefore time.Time) (int64, error) {
	res, err := s.write.ExecContext(ctx, `DELETE FROM command_reports WHERE NOT EXISTS (SELECT 1 FROM host_commands h
		WHERE h.id = command_reports.command_id AND (h.finished_at IS NULL OR h.finished_at >= ?))`, timeArg(finishedBefore))
	if err != nil {
		return 0, fmt.Errorf("store: prune command reports: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

func scanCommandReport(row rowScanner) (store.CommandReport, error) {
	var r store.CommandReport
	err := row.Scan(&r.Seq, &r.CommandID, &r.AgentID, blobCol{&r.Event}, timeCol{&r.ReceivedAt})
	return r, err
}
