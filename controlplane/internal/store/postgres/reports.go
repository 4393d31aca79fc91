package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

// AddCommandReports appends reports in one transaction, in order. The
// table's trigger orders the writers and wakes the other replicas.
func (s *Store) AddCommandReports(ctx context.Context, reports []store.CommandReport) error {
	if len(reports) == 0 {
		return nil
	}
	ids, agents, events, at := make([]string, len(reports)), make([]string, len(reports)), make([][]byte, len(reports)), make([]*int64, len(reports))
	for i, r := range reports {
		v, err := nanos(r.ReceivedAt)
		if err != nil {
			return fmt.Errorf("store: add command report for %q: received_at: %w", r.CommandID, err)
		}
		ids[i], agents[i], events[i], at[i] = r.CommandID, r.AgentID, r.Event, v
	}
	// WITH ORDINALITY keeps the order given: seq follows it.
	_, err := s.pool.Exec(ctx, `INSERT INTO command_reports (command_id, agent_id, event, received_at)
		SELECT u.command_id, u.agent_id, u.event, u.received_at
		FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int8[]) WITH ORDINALITY AS u(command_id, agent_id, event, received_at, n)
		ORDER BY u.n`, ids, agents, events, at)
	if err != nil {
		return wrap(err, "add command reports")
	}
	return nil
}

// ListCommandReports returns the reports after afterSeq, by seq.
func (s *Store) ListCommandReports(ctx context.Context, afterSeq int64, limit int) ([]store.CommandReport, error) {
	var w where
	w.add("seq > ?", afterSeq)
	query, args := w.query(`SELECT `+store.CommandReportColumns+` FROM command_reports`, "seq", limit)
	return queryAll(ctx, s.pool, "list command reports", scanCommandReport, query, args...)
}

// ListCommandReportsFor returns the reports about commandIDs, by seq.
func (s *Store) ListCommandReportsFor(ctx context.Context, commandIDs []string) ([]store.CommandReport, error) {
	return queryAll(ctx, s.pool, "list command reports", scanCommandReport,
		`SELECT `+store.CommandReportColumns+` FROM command_reports WHERE command_id = ANY($1) ORDER BY seq`, commandIDs)
}

// PruneCommandReports deletes the reports of commands finished before
// finishedBefore or gone.
func (s *Store) PruneCommandReports(ctx context.Context, finishedBefore time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM command_reports r WHERE NOT EXISTS (SELECT 1 FROM host_commands h
		WHERE h.id = r.command_id AND (h.finished_at IS NULL OR h.finished_at >= $1))`, timeArg(finishedBefore))
	if err != nil {
		return 0, wrap(err, "prune command reports")
	}
	return tag.RowsAffected(), nil
}

func scanCommandReport(row pgx.Row) (store.CommandReport, error) {
	var r store.CommandReport
	err := row.Scan(&r.Seq, &r.CommandID, &r.AgentID, &r.Event, timeCol{&r.ReceivedAt})
	return r, err
}
