package commands

import (
	"path"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/validate"

	"flotilla.dev/controlplane/internal/schedule"
)

// The backup kinds' parameters, checked as the agent will check them
// (its guard rails check them again against its configuration).

// ValidateDestination checks a backup destination; field names it (e.g.
// "spec.backup.destination"). Unset is the agent's local directory.
func ValidateDestination(field string, d *flotillav1.BackupDestination) error {
	s3 := d.GetS3()
	if s3 == nil {
		return nil
	}
	if err := validate.S3Bucket(s3.GetBucket()); err != nil {
		return invalid(field+".s3.bucket", "%v", err)
	}
	if err := validate.S3Prefix(s3.GetPrefix()); err != nil {
		return invalid(field+".s3.prefix", "%v", err)
	}
	if e := s3.GetEndpoint(); e != "" {
		if err := validate.S3Endpoint(e); err != nil {
			return invalid(field+".s3.endpoint", "%v; the agent must list it in backup.s3", err)
		}
	}
	return nil
}

func validateBackupTarget(field, database string, dest *flotillav1.BackupDestination) error {
	if err := validate.DatabaseName(database); err != nil {
		return invalid(field+".database", "%v; name a database of the agent's backup.databases", err)
	}
	return ValidateDestination(field+".destination", dest)
}

func validateBackupName(field, name string) error {
	if name == "" {
		return nil // the newest
	}
	if err := validate.BackupName(name); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

func validatePrune(field string, p *flotillav1.PruneCommand) error {
	if err := validateBackupTarget(field, p.GetDatabase(), p.GetDestination()); err != nil {
		return err
	}
	r := p.GetRetention()
	if r.GetKeepLast()|r.GetKeepDaily()|r.GetKeepWeekly()|r.GetKeepMonthly() == 0 {
		return invalid(field+".retention", "set at least one of keep_last, keep_daily, keep_weekly, keep_monthly")
	}
	if _, err := schedule.LoadZone(r.GetTimeZone()); err != nil {
		return invalid(field+".retention.time_zone", "%v", err)
	}
	return nil
}

func validateRestore(field string, r *flotillav1.RestoreCommand) error {
	if err := validateBackupTarget(field, r.GetDatabase(), r.GetDestination()); err != nil {
		return err
	}
	if err := validateBackupName(field+".backup", r.GetBackup()); err != nil {
		return err
	}
	switch t := r.GetTarget().(type) {
	case *flotillav1.RestoreCommand_Dump:
		if err := validate.DatabaseName(t.Dump.GetNewDatabase()); err != nil {
			return invalid(field+".dump.new_database", "%v", err)
		}
		return nil
	case *flotillav1.RestoreCommand_PointInTime:
		return validatePointInTime(field+".point_in_time", t.PointInTime)
	default:
		return invalid(field, "set one of dump or point_in_time")
	}
}

func validatePointInTime(field string, p *flotillav1.PointInTimeTarget) error {
	if tt := p.GetTargetTime(); tt != "latest" {
		// RFC 3339 always carries an offset or "Z": no target time is
		// read in a zone nobody stated.
		if _, err := time.Parse(time.RFC3339Nano, tt); err != nil {
			return invalid(field+".target_time", "want \"latest\" or an RFC 3339 time with an explicit offset (2026-12-07T09:15:00+01:00), got %q", tt)
		}
	}
	if d := p.GetDataDirectory(); !path.IsAbs(d) || path.Clean(d) != d || len(d) > 4096 {
		return invalid(field+".data_directory", "want a clean absolute path, got %q", d)
	}
	if port := p.GetPort(); port < 1024 || port > 65535 {
		return invalid(field+".port", "must be 1024-65535, got %d", port)
	}
	return nil
}
