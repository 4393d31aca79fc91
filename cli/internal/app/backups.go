package app

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/output"
)

func (a *app) backupCommand() *cobra.Command {
	c := &cobra.Command{Use: "backup", Aliases: []string{"backups"}, Short: "Backup policies and the catalog of backups"}
	policy := &cobra.Command{Use: "policy", Aliases: []string{"policies"}, Short: "Backup policies: what to back up, when, how long to keep it"}
	policy.AddCommand(a.policyWriteCommand(true), a.policyWriteCommand(false), a.policyGetCommand(),
		a.policyListCommand(), a.policyDeleteCommand())
	c.AddCommand(policy, a.backupListCommand(), a.backupGetCommand(), a.retentionPreviewCommand())
	return c
}

// destFlags are the flags naming a BackupDestination.
type destFlags struct{ bucket, prefix, endpoint string }

func (d *destFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&d.bucket, "s3-bucket", "", "store in (or read from) this S3 bucket instead of the agent's backup directory")
	fs.StringVar(&d.prefix, "s3-prefix", "", "the key prefix in --s3-bucket, e.g. prod/db-1")
	fs.StringVar(&d.endpoint, "s3-endpoint", "", "the S3 endpoint host[:port] (one the agent's configuration lists)")
}

// destination is the destination the flags name; nil: the agent's local
// directory.
func (d *destFlags) destination() (*flotillav1.BackupDestination, error) {
	if d.bucket == "" {
		if d.prefix != "" || d.endpoint != "" {
			return nil, usage("--s3-bucket: required with --s3-prefix or --s3-endpoint")
		}
		return nil, nil
	}
	return &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{
		Bucket: d.bucket, Prefix: d.prefix, Endpoint: d.endpoint}}}, nil
}

// retentionFlags are the --keep-* flags.
type retentionFlags struct{ last, daily, weekly, monthly uint32 }

func (r *retentionFlags) register(fs *pflag.FlagSet) {
	fs.Uint32Var(&r.last, "keep-last", 0, "keep the newest N backups")
	fs.Uint32Var(&r.daily, "keep-daily", 0, "keep the newest backup of each of the last N days")
	fs.Uint32Var(&r.weekly, "keep-weekly", 0, "keep the newest backup of each of the last N ISO weeks")
	fs.Uint32Var(&r.monthly, "keep-monthly", 0, "keep the newest backup of each of the last N months")
}

// changed reports whether any --keep-* flag was given.
func (r *retentionFlags) changed(fs *pflag.FlagSet) bool {
	for _, n := range []string{"keep-last", "keep-daily", "keep-weekly", "keep-monthly"} {
		if fs.Changed(n) {
			return true
		}
	}
	return false
}

// policyFlags are the flags of `backup policy create|update`.
type policyFlags struct {
	file                                         string
	selector, database, schedule, tz, drill, typ string
	noDrills, paused                             bool
	keep                                         retentionFlags
	dest                                         destFlags
}

func (p *policyFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&p.file, "file", "f", "", "the policy as YAML (a BackupPolicy, the API's field names; \"-\": stdin); flags override it")
	fs.StringVarP(&p.selector, "selector", "l", "", `the hosts whose database is backed up, e.g. "role=db,env=prod"`)
	fs.StringVar(&p.database, "database", "", "the database's name in the agents' backup.databases")
	fs.StringVar(&p.schedule, "schedule", "", `when: a five-field cron expression (default "0 2 * * *")`)
	fs.StringVar(&p.tz, "time-zone", "", "the IANA time zone of the schedules (default UTC)")
	fs.StringVar(&p.drill, "drill-schedule", "", `when to drill the latest backup: cron (default "0 4 * * 0")`)
	fs.StringVar(&p.typ, "type", "", "dump (pg_dump, the default) or base (pg_basebackup)")
	fs.BoolVar(&p.noDrills, "no-drills", false, "run no restore drills")
	fs.BoolVar(&p.paused, "paused", false, "stop scheduling runs")
	p.keep.register(fs)
	p.dest.register(fs)
}

// apply sets on pol the fields whose flags were given.
func (p *policyFlags) apply(fs *pflag.FlagSet, pol *flotillav1.BackupPolicy) error {
	set := func(flag string, dst *string, v string) {
		if fs.Changed(flag) {
			*dst = v
		}
	}
	set("selector", &pol.Selector, p.selector)
	set("database", &pol.Database, p.database)
	set("schedule", &pol.Schedule, p.schedule)
	set("time-zone", &pol.TimeZone, p.tz)
	set("drill-schedule", &pol.DrillSchedule, p.drill)
	if fs.Changed("no-drills") {
		pol.DrillsDisabled = p.noDrills
	}
	if fs.Changed("paused") {
		pol.Paused = p.paused
	}
	if fs.Changed("type") {
		t, err := parseBackupType(p.typ)
		if err != nil {
			return err
		}
		pol.Type = t
	}
	if p.keep.changed(fs) {
		pol.Retention = p.keep.merge(fs, pol.GetRetention())
	}
	if fs.Changed("s3-bucket") || fs.Changed("s3-prefix") || fs.Changed("s3-endpoint") {
		d, err := p.dest.destination()
		if err != nil {
			return err
		}
		pol.Destination = d
	}
	return nil
}

// merge is cur with the --keep-* flags given set on it.
func (r *retentionFlags) merge(fs *pflag.FlagSet, cur *flotillav1.BackupRetention) *flotillav1.BackupRetention {
	out := &flotillav1.BackupRetention{KeepLast: cur.GetKeepLast(), KeepDaily: cur.GetKeepDaily(),
		KeepWeekly: cur.GetKeepWeekly(), KeepMonthly: cur.GetKeepMonthly()}
	for flag, p := range map[string]struct {
		dst *uint32
		v   uint32
	}{"keep-last": {&out.KeepLast, r.last}, "keep-daily": {&out.KeepDaily, r.daily},
		"keep-weekly": {&out.KeepWeekly, r.weekly}, "keep-monthly": {&out.KeepMonthly, r.monthly}} {
		if fs.Changed(flag) {
			*p.dst = p.v
		}
	}
	return out
}

func parseBackupType(s string) (flotillav1.BackupType, error) {
	switch strings.ToLower(s) {
	case "dump":
		return flotillav1.BackupType_BACKUP_TYPE_DUMP, nil
	case "base":
		return flotillav1.BackupType_BACKUP_TYPE_BASE, nil
	}
	return 0, usage("--type %q: want dump or base", s)
}

// buildPolicy is the policy of `backup policy create|update`: the file's
// (or base, for an update without a file), the name argument, then the
// flags given.
func (a *app) buildPolicy(fs *pflag.FlagSet, pf *policyFlags, args []string, base *flotillav1.BackupPolicy) (*flotillav1.BackupPolicy, error) {
	pol := base
	if pf.file != "" {
		b, err := a.readFile("-f", pf.file)
		if err != nil {
			return nil, err
		}
		pol = &flotillav1.BackupPolicy{}
		if err := parseYAMLMessage(pf.file, b, "policy", pol); err != nil {
			return nil, err
		}
	}
	if pol == nil {
		pol = &flotillav1.BackupPolicy{}
	}
	if len(args) == 1 {
		if pol.Name != "" && pol.Name != args[0] {
			return nil, usage("NAME %q: the file names the policy %q", args[0], pol.Name)
		}
		pol.Name = args[0]
	}
	if pol.Name == "" {
		return nil, usage("NAME: required (as the argument or the file's name:)")
	}
	if err := pf.apply(fs, pol); err != nil {
		return nil, err
	}
	return pol, nil
}

func (a *app) policyWriteCommand(create bool) *cobra.Command {
	var pf policyFlags
	use, short := "create [NAME]", "Create a backup policy from flags or -f policy.yaml"
	if !create {
		use, short = "update [NAME]", "Change a backup policy: the flags given (or -f, the whole definition) replace its fields"
	}
	c := &cobra.Command{Use: use, Short: short, Args: cobra.MaximumNArgs(1)}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		var pol *flotillav1.BackupPolicy
		var err error
		if create || pf.file != "" {
			if pol, err = a.buildPolicy(c.Flags(), &pf, args, nil); err != nil {
				return err
			}
		} else if len(args) == 0 {
			return usage("NAME: required")
		}
		cl, err := a.connect()
		if err != nil {
			return err
		}
		if create {
			resp, err := call(cmd.Context(), cl.Backup.CreateBackupPolicy, &flotillav1.CreateBackupPolicyRequest{Policy: pol})
			if err != nil {
				return err
			}
			return a.printPolicy(resp, resp.GetPolicy(), "created")
		}
		if pol == nil {
			// Flags only: they change the stored definition.
			cur, err := call(cmd.Context(), cl.Backup.GetBackupPolicy, &flotillav1.GetBackupPolicyRequest{Name: args[0]})
			if err != nil {
				return err
			}
			if pol, err = a.buildPolicy(c.Flags(), &pf, args, cur.GetPolicy()); err != nil {
				return err
			}
		}
		resp, err := call(cmd.Context(), cl.Backup.UpdateBackupPolicy, &flotillav1.UpdateBackupPolicyRequest{Policy: pol})
		if err != nil {
			return err
		}
		return a.printPolicy(resp, resp.GetPolicy(), "updated")
	}
	pf.register(c.Flags())
	return c
}

// printPolicy prints a policy (the response itself with -o json|yaml).
func (a *app) printPolicy(resp proto.Message, p *flotillav1.BackupPolicy, verb string) error {
	if done, err := a.emit(resp); done || err != nil {
		return err
	}
	if verb != "" {
		fmt.Fprintf(a.env.Stdout, "backup policy %s %s\n", p.GetName(), verb)
	}
	fmt.Fprint(a.env.Stdout, policyKV(p))
	return nil
}

// policyKV is a policy as "key: value" lines.
func policyKV(p *flotillav1.BackupPolicy) string {
	var k kv
	k.add("name", p.GetName())
	k.add("selector", p.GetSelector())
	k.add("database", p.GetDatabase())
	k.add("type", enumName(p.GetType(), "BACKUP_TYPE_"))
	k.add("schedule", strings.TrimSpace(p.GetSchedule()+" "+p.GetTimeZone()))
	k.add("retention", retentionString(p.GetRetention()))
	k.add("keeps", strings.Join(p.GetRecoveryPoints(), "; "))
	k.add("destination", destinationString(p.GetDestination()))
	if p.GetDrillsDisabled() {
		k.add("drills", "disabled")
	} else {
		k.add("drills", p.GetDrillSchedule())
	}
	if p.GetPaused() {
		k.add("paused", "yes")
	}
	for _, s := range []struct {
		name string
		st   *flotillav1.BackupScheduleStatus
	}{{"backups", p.GetBackupStatus()}, {"drill runs", p.GetDrillStatus()}, {"prunes", p.GetPruneStatus()}} {
		k.add(s.name, scheduleString(s.st))
	}
	k.add("created by", p.GetCreatedBy())
	k.add("created", ts(p.GetCreatedAt()))
	k.add("updated", ts(p.GetUpdatedAt()))
	return k.String()
}

func retentionString(r *flotillav1.BackupRetention) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("last %d, daily %d, weekly %d, monthly %d", r.GetKeepLast(), r.GetKeepDaily(), r.GetKeepWeekly(), r.GetKeepMonthly())
}

func destinationString(d *flotillav1.BackupDestination) string {
	s3 := d.GetS3()
	if s3 == nil {
		return "local"
	}
	u := "s3://" + s3.GetBucket() + "/" + s3.GetPrefix()
	if s3.GetEndpoint() != "" {
		u += " (" + s3.GetEndpoint() + ")"
	}
	return u
}

// scheduleString is where a schedule stands, on one line.
func scheduleString(s *flotillav1.BackupScheduleStatus) string {
	if s == nil {
		return ""
	}
	var parts []string
	if s.GetNextRunAt() != nil {
		parts = append(parts, "next "+ts(s.GetNextRunAt()))
	}
	if s.GetRunningCommandId() != "" {
		parts = append(parts, "running "+s.GetRunningCommandId())
	}
	if s.GetLastCommandId() != "" {
		outcome := "succeeded"
		if !s.GetLastSucceeded() {
			outcome = "failed: " + s.GetLastMessage()
		}
		parts = append(parts, fmt.Sprintf("last %s %s (%s)", ts(s.GetLastFinishedAt()), outcome, s.GetLastCommandId()))
	} else if s.GetLastMessage() != "" {
		parts = append(parts, "last: "+s.GetLastMessage())
	}
	return strings.Join(parts, ", ")
}

func (a *app) policyGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a backup policy with its schedules' state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), cl.Backup.GetBackupPolicy, &flotillav1.GetBackupPolicyRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return a.printPolicy(resp, resp.GetPolicy(), "")
		},
	}
}

func (a *app) policyListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List backup policies by name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), cl.Backup.ListBackupPolicies, &flotillav1.ListBackupPoliciesRequest{})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			t := output.NewTable(a.env.Stdout, "NAME", "SELECTOR", "DATABASE", "TYPE", "SCHEDULE", "NEXT", "LAST", "PAUSED")
			for _, p := range resp.GetPolicies() {
				last := ""
				if st := p.GetBackupStatus(); st.GetLastCommandId() != "" {
					last = "failed"
					if st.GetLastSucceeded() {
						last = "succeeded"
					}
				}
				t.Row(p.GetName(), p.GetSelector(), p.GetDatabase(), enumName(p.GetType(), "BACKUP_TYPE_"), p.GetSchedule(),
					ts(p.GetBackupStatus().GetNextRunAt()), last, yesNo(p.GetPaused()))
			}
			return t.Flush()
		},
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (a *app) policyDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Remove a backup policy (its catalogued backups stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), cl.Backup.DeleteBackupPolicy, &flotillav1.DeleteBackupPolicyRequest{Name: args[0]})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.env.Stdout, "backup policy %s deleted\n", args[0])
			return err
		},
	}
}

// listBackupsFlags are the flags of `backup ls`.
type listBackupsFlags struct {
	agent, database, policy, verified, pageToken string
	limit                                        int32
	all                                          bool
}

// request is the ListBackupsRequest the flags ask for.
func (f *listBackupsFlags) request() (*flotillav1.ListBackupsRequest, error) {
	req := &flotillav1.ListBackupsRequest{AgentId: f.agent, Database: f.database, Policy: f.policy,
		PageSize: f.limit, PageToken: f.pageToken}
	switch f.verified {
	case "", "all":
	case "yes", "true":
		req.Verified = flotillav1.VerifiedFilter_VERIFIED_FILTER_VERIFIED
	case "no", "false":
		req.Verified = flotillav1.VerifiedFilter_VERIFIED_FILTER_UNVERIFIED
	default:
		return nil, usage("--verified %q: want yes, no or all", f.verified)
	}
	if f.limit < 0 || f.limit > 200 {
		return nil, usage("--limit %d: want 1 to 200", f.limit)
	}
	return req, nil
}

func (a *app) backupListCommand() *cobra.Command {
	var f listBackupsFlags
	c := &cobra.Command{
		Use:   "ls",
		Short: "List catalogued backups, newest first, one page at a time (--all: every page)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request()
			if err != nil {
				return err
			}
			cl, err := a.connect()
			if err != nil {
				return err
			}
			t := output.NewTable(a.env.Stdout, "ID", "AGENT", "DATABASE", "TYPE", "POLICY", "FINISHED", "SIZE", "VERIFIED", "DRILL", "PRUNED")
			for {
				resp, err := call(cmd.Context(), cl.Backup.ListBackups, req)
				if err != nil {
					return err
				}
				if done, err := a.emit(resp); err != nil {
					return err
				} else if !done {
					for _, b := range resp.GetBackups() {
						t.Row(b.GetId(), b.GetAgentId(), b.GetDatabase(), enumName(b.GetType(), "BACKUP_TYPE_"), b.GetPolicy(),
							ts(b.GetFinishedAt()), byteSize(b.GetSizeBytes()), yesNo(b.GetVerified()), drillString(b.GetLastDrill()), ts(b.GetPrunedAt()))
					}
				}
				next := resp.GetNextPageToken()
				if next == "" {
					break
				}
				if !f.all {
					if err := t.Flush(); err != nil {
						return err
					}
					fmt.Fprintf(a.progress(), "more: flotilla backup ls --page-token %s (or --all)\n", next)
					return nil
				}
				req.PageToken = next
			}
			if a.format.Machine() {
				return nil
			}
			return t.Flush()
		},
	}
	fs := c.Flags()
	fs.StringVar(&f.agent, "agent", "", "only this agent's backups")
	fs.StringVar(&f.database, "database", "", "only backups of this database")
	fs.StringVar(&f.policy, "policy", "", "only backups made by this policy's runs")
	fs.StringVar(&f.verified, "verified", "", "yes: only verified backups; no: only unverified; all (default)")
	fs.Lookup("verified").NoOptDefVal = "yes"
	fs.Int32Var(&f.limit, "limit", 0, "backups per page (1-200; default 20)")
	fs.StringVar(&f.pageToken, "page-token", "", "the page to show: the token the previous page printed")
	fs.BoolVar(&f.all, "all", false, "every page (with -o json, one response per page)")
	return c
}

// byteSize is n bytes for a reader: "512 B", "1.5 MiB".
func byteSize(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// drillString is a backup's last drill on one line.
func drillString(d *flotillav1.BackupDrill) string {
	if d == nil {
		return ""
	}
	if !d.GetSucceeded() {
		return "failed " + ts(d.GetAt())
	}
	return fmt.Sprintf("ok %s (RTO %s, RPO %s)", ts(d.GetAt()), dur(d.GetRestoreDuration()), dur(d.GetRecoveryPoint()))
}

func (a *app) backupGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a catalogued backup",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), cl.Backup.GetBackup, &flotillav1.GetBackupRequest{Id: args[0]})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprint(a.env.Stdout, backupKV(resp.GetBackup()))
			return err
		},
	}
}

// backupKV is a backup as "key: value" lines.
func backupKV(b *flotillav1.Backup) string {
	var k kv
	k.add("id", b.GetId())
	k.add("name", b.GetName())
	k.add("agent", b.GetAgentId())
	k.add("database", b.GetDatabase())
	k.add("type", enumName(b.GetType(), "BACKUP_TYPE_"))
	k.add("policy", b.GetPolicy())
	k.add("command", b.GetCommandId())
	k.add("started", ts(b.GetStartedAt()))
	k.add("finished", ts(b.GetFinishedAt()))
	k.add("size", byteSize(b.GetSizeBytes()))
	k.add("sha256", b.GetSha256())
	k.add("uri", b.GetUri())
	k.add("verified", yesNo(b.GetVerified()))
	if d := b.GetLastDrill(); d != nil {
		k.add("last drill", drillString(d))
		k.add("drill message", d.GetMessage())
		k.add("drill command", d.GetCommandId())
	}
	k.add("pruned", ts(b.GetPrunedAt()))
	return k.String()
}

func (a *app) retentionPreviewCommand() *cobra.Command {
	var keep retentionFlags
	c := &cobra.Command{
		Use:   "retention-preview POLICY",
		Short: "What a prune would keep and delete under the policy's retention (or the --keep-* given); changes nothing",
		Args:  cobra.ExactArgs(1),
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		req := &flotillav1.GetRetentionPreviewRequest{Name: args[0]}
		if keep.changed(c.Flags()) {
			req.Retention = keep.merge(c.Flags(), nil)
		}
		cl, err := a.connect()
		if err != nil {
			return err
		}
		resp, err := call(cmd.Context(), cl.Backup.GetRetentionPreview, req)
		if err != nil {
			return err
		}
		if done, err := a.emit(resp); done || err != nil {
			return err
		}
		fmt.Fprintf(a.env.Stdout, "recoverable: %s\n", strings.Join(resp.GetRecoveryPoints(), "; "))
		for _, l := range resp.GetLost() {
			fmt.Fprintf(a.env.Stdout, "no longer recoverable on %s: %s\n", l.GetAgentId(), l.GetDescription())
		}
		t := output.NewTable(a.env.Stdout, "ACTION", "ID", "AGENT", "DATABASE", "TYPE", "FINISHED", "SIZE", "KEPT BY")
		for _, r := range resp.GetKept() {
			b := r.GetBackup()
			t.Row("keep", b.GetId(), b.GetAgentId(), b.GetDatabase(), enumName(b.GetType(), "BACKUP_TYPE_"),
				ts(b.GetFinishedAt()), byteSize(b.GetSizeBytes()), strings.Join(r.GetKeptBy(), ", "))
		}
		for _, b := range resp.GetPruned() {
			t.Row("delete", b.GetId(), b.GetAgentId(), b.GetDatabase(), enumName(b.GetType(), "BACKUP_TYPE_"),
				ts(b.GetFinishedAt()), byteSize(b.GetSizeBytes()), "")
		}
		return t.Flush()
	}
	keep.register(c.Flags())
	return c
}
