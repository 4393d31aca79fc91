package app

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// backupKindFlags are the flags of the backup kinds of `cmd run`: backup,
// base-backup, prune, restore and drill.
type backupKindFlags struct {
	dest     destFlags
	keep     retentionFlags
	timeZone string
	dryRun   bool
	wal      bool
	backup   string
	newDB    string
	replace  bool
	target   string
	dataDir  string
	port     uint32
}

// backupKind is one backup kind of `cmd run`: its usage, the flags it
// takes and how its spec is built from its argument and flags.
type backupKind struct {
	use, short string
	flags      func(fs *pflag.FlagSet, f *backupKindFlags)
	spec       func(db string, fs *pflag.FlagSet, f *backupKindFlags) (*flotillav1.CommandSpec, error)
}

func backupKinds() []backupKind {
	return []backupKind{
		{"backup DATABASE", "Back up a database by its name in the agent's configuration (pg_dump)", nil, backupSpec},
		{"base-backup DATABASE", "Take a base backup (pg_basebackup) of the cluster holding a configured database", nil, baseBackupSpec},
		{"prune DATABASE", "Delete the backups of a database that the --keep-* rules no longer keep (--dry-run lists them)", pruneFlags, pruneSpec},
		{"restore DATABASE", "Restore a backup: a dump into --new-database, or a base backup to --target-time into --data-directory", restoreFlags, restoreSpec},
		{"drill DATABASE", "Restore the newest verified dump (or --backup) into a scratch server and check it", drillFlags, drillSpec},
	}
}

func (a *app) backupKindCommands(rf *runFlags) []*cobra.Command {
	var out []*cobra.Command
	for _, k := range backupKinds() {
		var f backupKindFlags
		c := &cobra.Command{Use: k.use, Short: k.short, Args: cobra.ExactArgs(1)}
		c.RunE = func(cmd *cobra.Command, x []string) error {
			spec, err := k.spec(x[0], c.Flags(), &f)
			if err != nil {
				return err
			}
			return a.runCommand(cmd.Context(), spec, *rf)
		}
		f.dest.register(c.Flags())
		if k.flags != nil {
			k.flags(c.Flags(), &f)
		}
		out = append(out, c)
	}
	return out
}

func backupSpec(db string, _ *pflag.FlagSet, f *backupKindFlags) (*flotillav1.CommandSpec, error) {
	d, err := f.dest.destination()
	if err != nil {
		return nil, err
	}
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: db, Destination: d}}}, nil
}

func baseBackupSpec(db string, _ *pflag.FlagSet, f *backupKindFlags) (*flotillav1.CommandSpec, error) {
	d, err := f.dest.destination()
	if err != nil {
		return nil, err
	}
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_BaseBackup{BaseBackup: &flotillav1.BaseBackupCommand{Database: db, Destination: d}}}, nil
}

func pruneFlags(fs *pflag.FlagSet, f *backupKindFlags) {
	f.keep.register(fs)
	fs.StringVar(&f.timeZone, "time-zone", "", "the IANA time zone in which days, weeks and months begin (default UTC)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "list what would be deleted, delete nothing")
	fs.BoolVar(&f.wal, "wal", false, "also delete archived WAL that no kept base backup needs")
}

func pruneSpec(db string, fs *pflag.FlagSet, f *backupKindFlags) (*flotillav1.CommandSpec, error) {
	d, err := f.dest.destination()
	if err != nil {
		return nil, err
	}
	if f.keep.last+f.keep.daily+f.keep.weekly+f.keep.monthly == 0 {
		return nil, usage("--keep-last, --keep-daily, --keep-weekly or --keep-monthly: at least one must be above 0")
	}
	p := &flotillav1.PruneCommand{Database: db, Destination: d, DryRun: f.dryRun, Wal: f.wal,
		Retention: &flotillav1.RetentionRules{KeepLast: f.keep.last, KeepDaily: f.keep.daily,
			KeepWeekly: f.keep.weekly, KeepMonthly: f.keep.monthly, TimeZone: f.timeZone}}
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Prune{Prune: p}}, nil
}

func restoreFlags(fs *pflag.FlagSet, f *backupKindFlags) {
	fs.StringVar(&f.backup, "backup", "", "the backup by catalog name (default: the newest dump, or the newest base backup before --target-time)")
	fs.StringVar(&f.newDB, "new-database", "", "restore a dump into this new database of the same server")
	fs.BoolVar(&f.replace, "replace", false, "allow --new-database to exist, even the live one: dropped and re-created (audited)")
	fs.StringVar(&f.target, "target-time", "", `point in time: RFC 3339 with an offset, or "latest" (restores a base backup and WAL)`)
	fs.StringVar(&f.dataDir, "data-directory", "", "point in time: the new data directory (absolute, absent or empty)")
	fs.Uint32Var(&f.port, "port", 0, "point in time: the port the restored server listens on, on localhost (1024-65535)")
}

func restoreSpec(db string, _ *pflag.FlagSet, f *backupKindFlags) (*flotillav1.CommandSpec, error) {
	d, err := f.dest.destination()
	if err != nil {
		return nil, err
	}
	r := &flotillav1.RestoreCommand{Database: db, Destination: d, Backup: f.backup}
	pit := f.target != "" || f.dataDir != "" || f.port != 0
	switch {
	case f.newDB != "" && pit:
		return nil, usage("--new-database: not with --target-time, --data-directory or --port (a dump or a point in time, not both)")
	case f.newDB != "":
		r.Target = &flotillav1.RestoreCommand_Dump{Dump: &flotillav1.DumpRestoreTarget{NewDatabase: f.newDB, Replace: f.replace}}
	case pit:
		if f.replace {
			return nil, usage("--replace: only with --new-database")
		}
		for _, m := range []struct {
			flag    string
			missing bool
		}{{"--target-time", f.target == ""}, {"--data-directory", f.dataDir == ""}, {"--port", f.port == 0}} {
			if m.missing {
				return nil, usage("%s: required for a point-in-time restore", m.flag)
			}
		}
		r.Target = &flotillav1.RestoreCommand_PointInTime{PointInTime: &flotillav1.PointInTimeTarget{
			TargetTime: f.target, DataDirectory: f.dataDir, Port: f.port}}
	default:
		return nil, usage("--new-database (a dump) or --target-time with --data-directory and --port (a point in time): required")
	}
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: r}}, nil
}

func drillFlags(fs *pflag.FlagSet, f *backupKindFlags) {
	fs.StringVar(&f.backup, "backup", "", "the dump by catalog name (default: the newest verified dump)")
}

func drillSpec(db string, _ *pflag.FlagSet, f *backupKindFlags) (*flotillav1.CommandSpec, error) {
	d, err := f.dest.destination()
	if err != nil {
		return nil, err
	}
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drill{Drill: &flotillav1.DrillCommand{Database: db, Destination: d, Backup: f.backup}}}, nil
}
