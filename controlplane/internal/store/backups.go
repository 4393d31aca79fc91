package store

import (
	"context"
	"errors"
	"time"
)

// The jobs of a backup policy, each with its own schedule and run row.
const (
	// BackupJobBackup takes the backups.
	BackupJobBackup = "backup"
	// BackupJobDrill restores the latest backup into a scratch server.
	BackupJobDrill = "drill"
	// BackupJobPrune removes the backups the retention no longer keeps.
	BackupJobPrune = "prune"
)

// ErrRunInProgress is returned by StartBackupPolicyRun while the job has a
// run in progress, and by FinishBackupPolicyRun for a run that is not the
// one in progress.
var ErrRunInProgress = errors.New("another run of this job is in progress")

// BackupPolicy is a backup policy (BackupService). Its definition is kept
// as the serialized flotilla.v1.BackupPolicy, so that the store needs no
// knowledge of schedules or retention.
type BackupPolicy struct {
	Name string
	// Spec is the serialized flotilla.v1.BackupPolicy as accepted
	// (defaults filled in, output-only fields cleared).
	Spec      []byte
	CreatedBy string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// BackupPolicyRun is where one job of a policy stands: the last schedule
// slot that was run and the run in progress.
type BackupPolicyRun struct {
	Policy string
	// Job is BackupJobBackup, BackupJobDrill or BackupJobPrune.
	Job string
	// LastSlot is the schedule slot the last run started was for; zero
	// before the first.
	LastSlot time.Time
	// CommandID is the fleet command of the run in progress; "" when none.
	CommandID string
	StartedAt time.Time
	// The last finished run.
	LastCommandID  string
	LastFinishedAt time.Time
	LastSucceeded  bool
	LastMessage    string
	// LastSuccessAt is when the last run that succeeded on every host
	// finished; FinishBackupPolicyRun sets it from LastFinishedAt when
	// LastSucceeded, and keeps it otherwise.
	LastSuccessAt time.Time
}

// Backup is one catalogued backup, keyed by the host command that made it.
type Backup struct {
	// Seq is assigned by the store, increasing: the listing's order.
	Seq       int64
	ID        string
	AgentID   string
	Database  string
	Policy    string
	CommandID string
	StartedAt time.Time
	// FinishedAt is required.
	FinishedAt time.Time
	SizeBytes  int64
	SHA256     string
	URI        string
	Verified   bool
	// The last restore drill; a zero DrillAt means none ran.
	DrillAt        time.Time
	DrillSucceeded bool
	DrillMessage   string
	DrillCommandID string
	// DrillRestore is the measured restore time (RTO).
	DrillRestore time.Duration
	// DrillRPO is the measured recovery point.
	DrillRPO time.Duration
	// PrunedAt is when a prune removed the archive; zero while kept.
	PrunedAt time.Time
	// Name is the backup's name in the agent's catalog ("" when the agent
	// reported none).
	Name string
	// Type is a flotilla.v1.BackupType value.
	Type int32
}

// BackupDrill is the outcome of one restore drill of a backup.
type BackupDrill struct {
	BackupID  string
	At        time.Time
	Succeeded bool
	Message   string
	CommandID string
	Restore   time.Duration
	RPO       time.Duration
}

// BackupQuery selects catalogued backups, newest (highest Seq) first.
type BackupQuery struct {
	AgentID  string // all when empty
	Database string // all when empty
	Policy   string // all when empty
	Name     string // all when empty
	// Verified keeps only verified (true) or unverified (false) backups;
	// all when nil.
	Verified *bool
	// BeforeSeq continues a listing below this Seq (exclusive); 0 starts
	// from the newest.
	BeforeSeq int64
	// Limit bounds the rows; 0 means all.
	Limit int
}

// BackupStore persists backup policies, their runs and the catalog. It is
// part of Store.
type BackupStore interface {
	// CreateBackupPolicy inserts a policy; an existing name returns
	// ErrConflict.
	CreateBackupPolicy(ctx context.Context, p BackupPolicy) error
	// UpdateBackupPolicy replaces a policy's Spec and UpdatedAt, keeping
	// its creation fields, and returns it as stored; an unknown name
	// returns ErrNotFound.
	UpdateBackupPolicy(ctx context.Context, p BackupPolicy) (BackupPolicy, error)
	// GetBackupPolicy returns a policy or ErrNotFound.
	GetBackupPolicy(ctx context.Context, name string) (BackupPolicy, error)
	// ListBackupPolicies returns every policy by name.
	ListBackupPolicies(ctx context.Context) ([]BackupPolicy, error)
	// DeleteBackupPolicy removes a policy and its run rows (the catalog
	// keeps its backups); an unknown name returns ErrNotFound.
	DeleteBackupPolicy(ctx context.Context, name string) error

	// ListBackupPolicyRuns returns the run rows of one policy, or of every
	// policy when policy is "", by policy then job.
	ListBackupPolicyRuns(ctx context.Context, policy string) ([]BackupPolicyRun, error)
	// StartBackupPolicyRun records that r.CommandID runs r.Job of
	// r.Policy for slot r.LastSlot, started at r.StartedAt; the last-run
	// fields are kept. A job with a run in progress returns
	// ErrRunInProgress and nothing is written; an unknown policy returns
	// ErrNotFound.
	StartBackupPolicyRun(ctx context.Context, r BackupPolicyRun) error
	// FinishBackupPolicyRun records the end of the run in progress, whose
	// command is r.LastCommandID, with r's last-run fields, and clears the
	// run in progress. A job whose run in progress is another (or none)
	// returns ErrRunInProgress and nothing is written.
	FinishBackupPolicyRun(ctx context.Context, r BackupPolicyRun) error

	// RecordBackup catalogues a backup and returns it as stored. A backup
	// already catalogued under b.ID is kept as it is, except that an empty
	// policy takes b.Policy: recording is idempotent.
	RecordBackup(ctx context.Context, b Backup) (Backup, error)
	// GetBackup returns a catalogued backup or ErrNotFound.
	GetBackup(ctx context.Context, id string) (Backup, error)
	// ListBackups returns catalogued backups, highest Seq first.
	ListBackups(ctx context.Context, q BackupQuery) ([]Backup, error)
	// RecordBackupDrill sets the last drill of a backup; an unknown backup
	// returns ErrNotFound.
	RecordBackupDrill(ctx context.Context, d BackupDrill) error
	// MarkBackupsPruned sets the pruned time of the backups with these IDs
	// that have none yet; unknown IDs are skipped.
	MarkBackupsPruned(ctx context.Context, ids []string, at time.Time) error
	// LatestBackups returns, for each agent and database, its newest
	// verified backup and its latest drills: what the gauges of a starting
	// control plane show.
	LatestBackups(ctx context.Context) (LatestBackups, error)
}

// LatestBackups is, per agent and database, the newest of each kind; a
// database without one has no entry in that list. Each list is ordered by
// agent ID, then database.
type LatestBackups struct {
	// Verified is the newest verified backup, by finish time.
	Verified []Backup
	// Drilled is the backup of the latest drill, by drill time.
	Drilled []Backup
	// DrillSucceeded is the backup of the latest successful drill.
	DrillSucceeded []Backup
}

// LatestBackupQueries are the three queries of LatestBackups, in its
// fields' order, as plain SQL both drivers run (no arguments): the row of
// each agent and database that no other row of the same pair beats.
func LatestBackupQueries() [3]string {
	newest := func(cond func(string) string, order string) string {
		return `SELECT ` + BackupColumns + ` FROM backups b WHERE ` + cond("b") + ` AND NOT EXISTS (
			SELECT 1 FROM backups o WHERE o.agent_id = b.agent_id AND o.database_name = b.database_name
			AND ` + cond("o") + ` AND (o.` + order + `, o.seq) > (b.` + order + `, b.seq))
			ORDER BY b.agent_id, b.database_name`
	}
	verified := func(t string) string { return t + ".verified" }
	drilled := func(t string) string { return t + ".drill_at IS NOT NULL" }
	succeeded := func(t string) string { return t + ".drill_at IS NOT NULL AND " + t + ".drill_succeeded" }
	return [3]string{newest(verified, "finished_at"), newest(drilled, "drill_at"), newest(succeeded, "drill_at")}
}
