package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/exitcode"
)

// kindSpec parses args with the flags of a backup kind of `cmd run` and
// builds its spec.
func kindSpec(t *testing.T, use string, args ...string) (*flotillav1.CommandSpec, error) {
	t.Helper()
	for _, k := range backupKinds() {
		if !strings.HasPrefix(k.use, use+" ") {
			continue
		}
		var f backupKindFlags
		fs := pflag.NewFlagSet(use, pflag.ContinueOnError)
		f.dest.register(fs)
		if k.flags != nil {
			k.flags(fs, &f)
		}
		if err := fs.Parse(args); err != nil {
			t.Fatalf("%s %v: %v", use, args, err)
		}
		return k.spec("shop", fs, &f)
	}
	t.Fatalf("no kind %q", use)
	return nil, nil
}

func TestBackupKindSpecs(t *testing.T) {
	s3 := &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: "bk", Prefix: "prod/db", Endpoint: "s3.local:9000"}}}
	for _, c := range []struct {
		use  string
		args []string
		want *flotillav1.CommandSpec
	}{
		{"backup", nil, &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: "shop"}}}},
		{"backup", []string{"--s3-bucket", "bk", "--s3-prefix", "prod/db", "--s3-endpoint", "s3.local:9000"},
			&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: "shop", Destination: s3}}}},
		{"base-backup", []string{"--s3-bucket", "bk", "--s3-prefix", "prod/db", "--s3-endpoint", "s3.local:9000"},
			&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_BaseBackup{BaseBackup: &flotillav1.BaseBackupCommand{Database: "shop", Destination: s3}}}},
		{"prune", []string{"--keep-last", "3", "--keep-weekly", "2", "--time-zone", "Europe/Paris", "--dry-run", "--wal"},
			&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Prune{Prune: &flotillav1.PruneCommand{Database: "shop", DryRun: true, Wal: true,
				Retention: &flotillav1.RetentionRules{KeepLast: 3, KeepWeekly: 2, TimeZone: "Europe/Paris"}}}}},
		{"restore", []string{"--new-database", "shop_copy", "--backup", "shop-20261207T020000Z"},
			&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{Database: "shop", Backup: "shop-20261207T020000Z",
				Target: &flotillav1.RestoreCommand_Dump{Dump: &flotillav1.DumpRestoreTarget{NewDatabase: "shop_copy"}}}}}},
		{"restore", []string{"--new-database", "shop", "--replace"},
			&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{Database: "shop",
				Target: &flotillav1.RestoreCommand_Dump{Dump: &flotillav1.DumpRestoreTarget{NewDatabase: "shop", Replace: true}}}}}},
		{"restore", []string{"--target-time", "latest", "--data-directory", "/srv/pitr", "--port", "5499"},
			&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{Database: "shop",
				Target: &flotillav1.RestoreCommand_PointInTime{PointInTime: &flotillav1.PointInTimeTarget{TargetTime: "latest", DataDirectory: "/srv/pitr", Port: 5499}}}}}},
		{"drill", []string{"--backup", "shop-1"},
			&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drill{Drill: &flotillav1.DrillCommand{Database: "shop", Backup: "shop-1"}}}},
	} {
		got, err := kindSpec(t, c.use, c.args...)
		if err != nil || !proto.Equal(got, c.want) {
			t.Errorf("%s %v: got %v, %v; want %v", c.use, c.args, prototext.Format(got), err, prototext.Format(c.want))
		}
		if specKind(got) != c.use {
			t.Errorf("%s: specKind %q", c.use, specKind(got))
		}
	}
}

func TestBackupKindErrorsNameTheFlag(t *testing.T) {
	for _, c := range []struct {
		use  string
		args []string
		flag string
	}{
		{"prune", nil, "--keep-last"},
		{"prune", []string{"--keep-last", "1", "--s3-prefix", "x"}, "--s3-bucket"},
		{"restore", nil, "--new-database"},
		{"restore", []string{"--new-database", "a", "--port", "5432"}, "--new-database"},
		{"restore", []string{"--target-time", "latest", "--port", "5432"}, "--data-directory"},
		{"restore", []string{"--target-time", "latest", "--data-directory", "/d"}, "--port"},
		{"restore", []string{"--target-time", "latest", "--data-directory", "/d", "--port", "5499", "--replace"}, "--replace"},
	} {
		_, err := kindSpec(t, c.use, c.args...)
		if err == nil || !strings.HasPrefix(err.Error(), c.flag) || exitcode.ForError(err) != exitcode.Invalid {
			t.Errorf("%s %v: error %v; want invalid input naming %s", c.use, c.args, err, c.flag)
		}
	}
}

// policyFromArgs parses the flags of `backup policy create` and builds the
// policy over base.
func policyFromArgs(t *testing.T, base *flotillav1.BackupPolicy, args ...string) (*flotillav1.BackupPolicy, error) {
	t.Helper()
	var pf policyFlags
	fs := pflag.NewFlagSet("policy", pflag.ContinueOnError)
	pf.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	a := &app{env: Env{Stdin: strings.NewReader("")}}
	return a.buildPolicy(fs, &pf, fs.Args(), base)
}

func TestBuildPolicy(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(`policy:
  name: shop
  selector: role=db
  database: shop
  schedule: "30 1 * * *"
  timeZone: Europe/Paris
  retention: {keep_last: 3, keep_daily: 7}
  destination: {s3: {bucket: bk, prefix: prod}}
  type: BACKUP_TYPE_BASE
`), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := policyFromArgs(t, nil, "-f", file, "--keep-weekly", "4", "--paused")
	want := &flotillav1.BackupPolicy{Name: "shop", Selector: "role=db", Database: "shop", Schedule: "30 1 * * *", TimeZone: "Europe/Paris",
		Retention:   &flotillav1.BackupRetention{KeepLast: 3, KeepDaily: 7, KeepWeekly: 4},
		Destination: &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: "bk", Prefix: "prod"}}},
		Type:        flotillav1.BackupType_BACKUP_TYPE_BASE, Paused: true}
	if err != nil || !proto.Equal(got, want) {
		t.Errorf("file and flags: got %v, %v; want %v", prototext.Format(got), err, prototext.Format(want))
	}

	// An update from flags changes only what they name.
	base := proto.Clone(want).(*flotillav1.BackupPolicy)
	got, err = policyFromArgs(t, base, "shop", "--schedule", "0 3 * * *", "--no-drills", "--type", "dump", "--keep-last", "10")
	want.Schedule, want.DrillsDisabled, want.Type, want.Retention.KeepLast = "0 3 * * *", true, flotillav1.BackupType_BACKUP_TYPE_DUMP, 10
	if err != nil || !proto.Equal(got, want) {
		t.Errorf("update by flags: got %v, %v; want %v", prototext.Format(got), err, prototext.Format(want))
	}

	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--selector", "role=db"}, "NAME"},
		{[]string{"other", "-f", file}, "NAME \"other\""},
		{[]string{"x", "--type", "zip"}, "--type"},
		{[]string{"x", "--s3-endpoint", "e"}, "--s3-bucket"},
	} {
		if _, err := policyFromArgs(t, nil, c.args...); err == nil || !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("%v: error %v; want one starting with %s", c.args, err, c.msg)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: x\nretention: {keep_lots: 3}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := policyFromArgs(t, nil, "-f", bad); err == nil || !strings.Contains(err.Error(), "keep_lots") {
		t.Errorf("an unknown field: error %v; want it named", err)
	}
}

func TestListBackupsRequest(t *testing.T) {
	f := listBackupsFlags{agent: "ag-1", database: "shop", policy: "nightly", verified: "yes", limit: 5, pageToken: "tok"}
	got, err := f.request()
	want := &flotillav1.ListBackupsRequest{AgentId: "ag-1", Database: "shop", Policy: "nightly",
		Verified: flotillav1.VerifiedFilter_VERIFIED_FILTER_VERIFIED, PageSize: 5, PageToken: "tok"}
	if err != nil || !proto.Equal(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
	f = listBackupsFlags{verified: "no"}
	if got, _ := f.request(); got.GetVerified() != flotillav1.VerifiedFilter_VERIFIED_FILTER_UNVERIFIED {
		t.Errorf("--verified no: %v", got.GetVerified())
	}
	for _, bad := range []listBackupsFlags{{verified: "maybe"}, {limit: 500}} {
		if _, err := bad.request(); err == nil || !strings.HasPrefix(err.Error(), "--") {
			t.Errorf("%+v: error %v; want one naming the flag", bad, err)
		}
	}
}

// strategyFromArgs parses the strategy flags of `rollout start` and builds
// the override over base.
func strategyFromArgs(t *testing.T, base *flotillav1.RolloutStrategy, args ...string) (*flotillav1.RolloutStrategy, error) {
	t.Helper()
	var sf strategyFlags
	fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	if !sf.overrides(fs) {
		return nil, nil
	}
	return (&app{}).strategy(fs, &sf, base)
}

func TestStrategyOverride(t *testing.T) {
	base := &flotillav1.RolloutStrategy{Batch: &flotillav1.RolloutStrategy_BatchSize{BatchSize: 1},
		MinHealthyTime: durationpb.New(time.Second), HealthyDeadline: durationpb.New(10 * time.Second),
		MaxFailures: &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: 1}}, AutoRollback: true}
	if got, err := strategyFromArgs(t, base); got != nil || err != nil {
		t.Errorf("no strategy flag: %v, %v; want no override", got, err)
	}
	got, err := strategyFromArgs(t, base, "--batch-percent", "50", "--canary", "1", "--max-failures", "25%",
		"--pause-between", "2s", "--auto-rollback=false", "--offline-hosts", "wait", "--offline-wait", "1m")
	want := proto.Clone(base).(*flotillav1.RolloutStrategy)
	want.Batch = &flotillav1.RolloutStrategy_BatchPercent{BatchPercent: 50}
	want.Canary, want.AutoRollback, want.OfflineHosts = 1, false, flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT
	want.MaxFailures = &flotillav1.Limit{Kind: &flotillav1.Limit_Percent{Percent: 25}}
	want.PauseBetweenBatches, want.OfflineWait = durationpb.New(2*time.Second), durationpb.New(time.Minute)
	if err != nil || !proto.Equal(got, want) {
		t.Errorf("flags over the default: got %v, %v; want %v", prototext.Format(got), err, prototext.Format(want))
	}
	if base.GetCanary() != 0 || !base.GetAutoRollback() {
		t.Errorf("the service's default strategy was changed: %v", base)
	}

	file := filepath.Join(t.TempDir(), "strategy.yaml")
	if err := os.WriteFile(file, []byte("batchSize: 2\nhealthy_deadline: 2m\nanalysis:\n  interval: 30s\n  queries: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = strategyFromArgs(t, base, "--strategy-file", file, "--bake", "10m")
	want = &flotillav1.RolloutStrategy{Batch: &flotillav1.RolloutStrategy_BatchSize{BatchSize: 2}, HealthyDeadline: durationpb.New(2 * time.Minute),
		Analysis: &flotillav1.Analysis{Interval: durationpb.New(30 * time.Second), Bake: durationpb.New(10 * time.Minute)}}
	if err != nil || !proto.Equal(got, want) {
		t.Errorf("the file replaces the default: got %v, %v; want %v", prototext.Format(got), err, prototext.Format(want))
	}

	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--batch-size", "2", "--batch-percent", "10"}, "--batch-size"},
		{[]string{"--max-failures", "some"}, "--max-failures"},
		{[]string{"--offline-hosts", "later"}, "--offline-hosts"},
		{[]string{"--bake", "1m"}, "--bake"},
	} {
		if _, err := strategyFromArgs(t, base, c.args...); err == nil || !strings.HasPrefix(err.Error(), c.flag) {
			t.Errorf("%v: error %v; want one naming %s", c.args, err, c.flag)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("min_healthy_time: soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := strategyFromArgs(t, base, "--strategy-file", bad); err == nil || !strings.Contains(err.Error(), "min_healthy_time") {
		t.Errorf("a bad duration: error %v; want it named", err)
	}
}

func TestSubscriptionRequests(t *testing.T) {
	a := &app{}
	req, err := a.createSubscriptionRequest("ops", []string{"rollout.failed", "AGENT_LOST", "rollout_rolled_back"}, &sinkFlags{webhook: "https://h.example/x"})
	want := &flotillav1.CreateSubscriptionRequest{Name: "ops", Events: []flotillav1.NotificationEventType{
		flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_ROLLOUT_FAILED,
		flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_AGENT_LOST,
		flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_ROLLOUT_ROLLED_BACK},
		Sink: &flotillav1.Sink{Kind: &flotillav1.Sink_Webhook{Webhook: &flotillav1.WebhookSink{Url: "https://h.example/x"}}}}
	if err != nil || !proto.Equal(req, want) {
		t.Errorf("create: got %v, %v; want %v", req, err, want)
	}
	if eventName(flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_ROLLOUT_ROLLED_BACK) != "rollout.rolled_back" {
		t.Errorf("eventName: %q", eventName(flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_ROLLOUT_ROLLED_BACK))
	}
	for _, c := range []struct {
		events []string
		sink   sinkFlags
		flag   string
	}{
		{nil, sinkFlags{webhook: "https://x"}, "--events"},
		{[]string{"rollout.exploded"}, sinkFlags{webhook: "https://x"}, "--events"},
		{[]string{"agent.lost"}, sinkFlags{}, "--webhook"},
		{[]string{"agent.lost"}, sinkFlags{webhook: "https://x", slack: "https://hooks.slack.com/s"}, "--webhook"},
		{[]string{"agent.lost"}, sinkFlags{slack: "https://hooks.slack.com/s", secrets: []string{"whsec_x"}}, "--secret"},
	} {
		if _, err := a.createSubscriptionRequest("ops", c.events, &c.sink); err == nil || !strings.HasPrefix(err.Error(), c.flag) {
			t.Errorf("%v %+v: error %v; want one naming %s", c.events, c.sink, err, c.flag)
		}
	}

	// An update keeps the events and the paused state no flag names.
	cur := &flotillav1.Subscription{Id: "ns-1", Events: want.Events[:1], Paused: true}
	fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
	var sf sinkFlags
	var events []string
	var paused bool
	fs.StringSliceVar(&events, "events", nil, "")
	fs.BoolVar(&paused, "paused", false, "")
	sf.register(fs)
	if err := fs.Parse([]string{"--secret", "whsec_new", "--secret", "whsec_old", "--webhook", "https://h.example/y"}); err != nil {
		t.Fatal(err)
	}
	up, err := a.updateSubscriptionRequest(fs, cur, events, &sf, paused)
	wantUp := &flotillav1.UpdateSubscriptionRequest{SubscriptionId: "ns-1", Events: want.Events[:1], Paused: true,
		Sink: &flotillav1.Sink{Kind: &flotillav1.Sink_Webhook{Webhook: &flotillav1.WebhookSink{Url: "https://h.example/y", Secrets: []string{"whsec_new", "whsec_old"}}}}}
	if err != nil || !proto.Equal(up, wantUp) {
		t.Errorf("update: got %v, %v; want %v", up, err, wantUp)
	}
}

// TestNewKindsRefusedBeforeAnyCall: a backup kind's bad flags are invalid
// input on one line, before any connection.
func TestNewKindsRefusedBeforeAnyCall(t *testing.T) {
	for _, args := range [][]string{
		{"cmd", "run", "prune", "shop", "-l", "role=db"},
		{"cmd", "run", "restore", "shop", "-l", "role=db"},
		{"backup", "ls", "--verified=maybe"},
		{"backup", "policy", "create", "--selector", "role=db"},
		{"notify", "sub", "create", "ops", "--webhook", "https://x"},
		{"rollout", "start", "web", "--image", "a:1", "--strategy-file", "/does/not/exist.yaml"},
	} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), args, Env{Stdout: &out, Stderr: &errOut,
			Getenv: func(string) string { return "" }, Version: "test"})
		if code != int(exitcode.Invalid) || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 || !strings.Contains(errOut.String(), "--") && !strings.Contains(errOut.String(), "NAME") {
			t.Errorf("%v: exit %d, stderr %q; want %d and one line naming the flag", args, code, errOut.String(), exitcode.Invalid)
		}
	}
}
