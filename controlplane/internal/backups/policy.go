package backups

import (
	"fmt"
	"regexp"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/validate"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/schedule"
	"flotilla.dev/controlplane/internal/selector"
	"flotilla.dev/controlplane/internal/store"
)

// Defaults of a policy.
const (
	// DefaultSchedule is every day at 02:00.
	DefaultSchedule = "0 2 * * *"
	// DefaultDrillSchedule is every Sunday at 04:00.
	DefaultDrillSchedule = "0 4 * * 0"
	// DefaultTimeZone reads schedules in UTC.
	DefaultTimeZone = "UTC"
)

// DefaultRetention is what a policy without retention keeps.
var DefaultRetention = &flotillav1.BackupRetention{KeepLast: 7, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6}

const (
	maxSelector  = 1024
	maxRetention = 1000
)

var policyNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidatePolicyName checks a policy name; field names it in the error.
func ValidatePolicyName(field, name string) error {
	switch {
	case name == "":
		return fault.Invalid(field, "required")
	case !policyNameRE.MatchString(name):
		return fault.Invalid(field, "%q is not a policy name ([a-z0-9-], 1 to 63 characters, starting with a letter or digit)", name)
	}
	return nil
}

// Normalize checks a policy and returns its definition with defaults filled
// in and output-only fields cleared: what the store keeps. Errors are
// InvalidArgument naming the field, under "policy.".
func Normalize(p *flotillav1.BackupPolicy) (*flotillav1.BackupPolicy, error) {
	if p == nil {
		return nil, fault.Invalid("policy", "required")
	}
	if err := ValidatePolicyName("policy.name", p.GetName()); err != nil {
		return nil, err
	}
	out := &flotillav1.BackupPolicy{
		Name: p.GetName(), Selector: p.GetSelector(), Database: p.GetDatabase(), Schedule: p.GetSchedule(),
		TimeZone: p.GetTimeZone(), Retention: proto.Clone(DefaultRetention).(*flotillav1.BackupRetention),
		Destination: p.GetDestination(), Type: p.GetType(), DrillSchedule: p.GetDrillSchedule(), DrillsDisabled: p.GetDrillsDisabled(),
		Paused: p.GetPaused(),
	}
	if err := checkTarget(out); err != nil {
		return nil, err
	}
	if out.Schedule == "" {
		out.Schedule = DefaultSchedule
	}
	if out.DrillSchedule == "" {
		out.DrillSchedule = DefaultDrillSchedule
	}
	if out.TimeZone == "" {
		out.TimeZone = DefaultTimeZone
	}
	if _, err := schedule.LoadZone(out.TimeZone); err != nil {
		return nil, fault.Invalid("policy.time_zone", "%v", err)
	}
	if _, err := schedule.Parse(out.Schedule, out.TimeZone); err != nil {
		return nil, fault.Invalid("policy.schedule", "%q: %v", out.Schedule, err)
	}
	if _, err := schedule.Parse(out.DrillSchedule, out.TimeZone); err != nil {
		return nil, fault.Invalid("policy.drill_schedule", "%q: %v", out.DrillSchedule, err)
	}
	if r := p.GetRetention(); r != nil && (r.GetKeepLast()|r.GetKeepDaily()|r.GetKeepWeekly()|r.GetKeepMonthly()) != 0 {
		if err := checkRetention(r); err != nil {
			return nil, err
		}
		out.Retention = proto.Clone(r).(*flotillav1.BackupRetention)
	}
	return out, nil
}

// checkTarget checks the selector, the database and the destination.
func checkTarget(p *flotillav1.BackupPolicy) error {
	switch {
	case p.Selector == "":
		return fault.Invalid("policy.selector", "required: the label selector of the database hosts (e.g. \"role=db,env=prod\")")
	case len(p.Selector) > maxSelector:
		return fault.Invalid("policy.selector", "longer than %d bytes", maxSelector)
	}
	if _, err := selector.Parse(p.Selector); err != nil {
		return fault.Invalid("policy.selector", "%v", err)
	}
	if err := validate.DatabaseName(p.Database); err != nil {
		return fault.Invalid("policy.database", "%v; name a database of the agents' backup.databases", err)
	}
	switch p.Type {
	case flotillav1.BackupType_BACKUP_TYPE_UNSPECIFIED:
		p.Type = flotillav1.BackupType_BACKUP_TYPE_DUMP
	case flotillav1.BackupType_BACKUP_TYPE_DUMP, flotillav1.BackupType_BACKUP_TYPE_BASE:
	default:
		return fault.Invalid("policy.type", "%d is not a backup type (BACKUP_TYPE_DUMP or BACKUP_TYPE_BASE)", p.Type)
	}
	return commands.ValidateDestination("policy.destination", p.Destination)
}

// checkRetention bounds a retention's rules; errors name them under
// "policy.retention.".
func checkRetention(r *flotillav1.BackupRetention) error {
	for field, v := range map[string]uint32{"keep_last": r.GetKeepLast(), "keep_daily": r.GetKeepDaily(),
		"keep_weekly": r.GetKeepWeekly(), "keep_monthly": r.GetKeepMonthly()} {
		if v > maxRetention {
			return fault.Invalid("policy.retention."+field, "%d, at most %d", v, maxRetention)
		}
	}
	return nil
}

// Policy is a stored policy, decoded, with its schedules parsed.
type Policy struct {
	Def       *flotillav1.BackupPolicy
	Stored    store.BackupPolicy
	Backup    *schedule.Schedule
	Drill     *schedule.Schedule // nil with drills disabled
	CreatedAt time.Time
}

// Decode reads a stored policy.
func Decode(sp store.BackupPolicy) (*Policy, error) {
	def := &flotillav1.BackupPolicy{}
	if err := proto.Unmarshal(sp.Spec, def); err != nil {
		return nil, fmt.Errorf("backup policy %s: stored definition unreadable: %w", sp.Name, err)
	}
	b, err := schedule.Parse(def.GetSchedule(), def.GetTimeZone())
	if err != nil {
		return nil, fmt.Errorf("backup policy %s: schedule: %w", sp.Name, err)
	}
	p := &Policy{Def: def, Stored: sp, Backup: b, CreatedAt: sp.CreatedAt}
	// A drill restores a dump: base backups are proven by point-in-time
	// restores, which an operator runs.
	if !def.GetDrillsDisabled() && def.GetType() != flotillav1.BackupType_BACKUP_TYPE_BASE {
		if p.Drill, err = schedule.Parse(def.GetDrillSchedule(), def.GetTimeZone()); err != nil {
			return nil, fmt.Errorf("backup policy %s: drill schedule: %w", sp.Name, err)
		}
	}
	return p, nil
}

// Render is the policy as the API shows it: the definition with its
// creation fields, the state of its schedules at now and its retention as
// recovery points.
func (p *Policy) Render(runs []store.BackupPolicyRun, now time.Time) *flotillav1.BackupPolicy {
	out := proto.Clone(p.Def).(*flotillav1.BackupPolicy)
	out.CreatedAt, out.UpdatedAt = timestamppb.New(p.Stored.CreatedAt), timestamppb.New(p.Stored.UpdatedAt)
	out.CreatedBy = p.Stored.CreatedBy
	out.RecoveryPoints = RecoveryPoints(out.GetRetention(), p.Backup, out.GetType())
	byJob := map[string]store.BackupPolicyRun{}
	for _, r := range runs {
		byJob[r.Job] = r
	}
	out.BackupStatus = p.status(p.Backup, byJob[store.BackupJobBackup], now)
	if p.Drill != nil {
		out.DrillStatus = p.status(p.Drill, byJob[store.BackupJobDrill], now)
	}
	out.PruneStatus = p.status(nil, byJob[store.BackupJobPrune], now)
	return out
}

func (p *Policy) status(s *schedule.Schedule, r store.BackupPolicyRun, now time.Time) *flotillav1.BackupScheduleStatus {
	st := &flotillav1.BackupScheduleStatus{
		RunningCommandId: r.CommandID, LastCommandId: r.LastCommandID,
		LastSucceeded: r.LastSucceeded, LastMessage: r.LastMessage,
	}
	if !r.LastSlot.IsZero() {
		st.LastSlot = timestamppb.New(r.LastSlot)
	}
	if !r.LastFinishedAt.IsZero() {
		st.LastFinishedAt = timestamppb.New(r.LastFinishedAt)
	}
	if s != nil && !p.Def.GetPaused() {
		if next := nextSlot(s, p.since(r.LastSlot), now); !next.IsZero() {
			st.NextRunAt = timestamppb.New(next)
		}
	}
	return st
}

// since is the instant after which a job's slots are owed: its last slot,
// or the policy's last change when that is later (a slot before a policy
// was created or changed is not owed).
func (p *Policy) since(lastSlot time.Time) time.Time {
	after := p.Stored.UpdatedAt
	if p.CreatedAt.After(after) {
		after = p.CreatedAt
	}
	if lastSlot.After(after) {
		after = lastSlot
	}
	return after
}

// nextSlot is the slot the scheduler runs next: the latest slot owed after
// after (a missed run, due now) or else the first after now.
func nextSlot(s *schedule.Schedule, after, now time.Time) time.Time {
	if owed := s.Latest(after, now); !owed.IsZero() {
		return owed
	}
	if after.After(now) {
		return s.Next(after)
	}
	return s.Next(now)
}
