package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/server/servertest"
	"flotilla.dev/controlplane/internal/store"
)

// newBackupService starts a control plane (servertest) and returns its
// backup service's client with an operator's context, and its store.
func newBackupService(t *testing.T) (flotillav1.BackupServiceClient, context.Context, store.Store) {
	t.Helper()
	cp := servertest.Start(t)
	secret, hash, err := auth.NewSecret(auth.APITokenPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Store().CreateAPIToken(context.Background(), store.APIToken{ID: "at-1", Name: "operator", Hash: hash,
		Role: auth.RoleOperator.String(), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return flotillav1.NewBackupServiceClient(cp.Dial(cp.ClientTLS())), servertest.Bearer(context.Background(), secret), cp.Store()
}

func wantStatus(t *testing.T, what string, err error, code codes.Code, contains ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: %v, want %v", what, err, code)
		return
	}
	for _, c := range contains {
		if !strings.Contains(status.Convert(err).Message(), c) {
			t.Errorf("%s: %q lacks %q", what, status.Convert(err).Message(), c)
		}
	}
}

func TestBackupPolicyLifecycle(t *testing.T) {
	c, ctx, _ := newBackupService(t)
	created, err := c.CreateBackupPolicy(ctx, &flotillav1.CreateBackupPolicyRequest{Policy: &flotillav1.BackupPolicy{
		Name: "nightly", Selector: "role=db", Database: "shop", TimeZone: "Europe/Paris",
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := created.GetPolicy()
	if p.GetSchedule() != "0 2 * * *" || p.GetDrillSchedule() != "0 4 * * 0" || p.GetCreatedBy() != "operator:at-1" ||
		p.GetBackupStatus().GetNextRunAt() == nil || len(p.GetRecoveryPoints()) == 0 || p.GetRetention().GetKeepDaily() != 7 {
		t.Errorf("created = %v", p)
	}
	_, err = c.CreateBackupPolicy(ctx, &flotillav1.CreateBackupPolicyRequest{Policy: &flotillav1.BackupPolicy{Name: "nightly", Selector: "role=db", Database: "shop"}})
	wantStatus(t, "create twice", err, codes.AlreadyExists, "policy.name", "UpdateBackupPolicy")

	upd, err := c.UpdateBackupPolicy(ctx, &flotillav1.UpdateBackupPolicyRequest{Policy: &flotillav1.BackupPolicy{
		Name: "nightly", Selector: "role=db", Database: "shop", Schedule: "30 3 * * *", DrillsDisabled: true,
	}})
	if err != nil || upd.GetPolicy().GetSchedule() != "30 3 * * *" || upd.GetPolicy().GetDrillStatus() != nil || upd.GetPolicy().GetCreatedBy() != "operator:at-1" {
		t.Errorf("update = %v, %v", upd, err)
	}
	_, err = c.UpdateBackupPolicy(ctx, &flotillav1.UpdateBackupPolicyRequest{Policy: &flotillav1.BackupPolicy{Name: "nope", Selector: "role=db", Database: "shop"}})
	wantStatus(t, "update unknown", err, codes.NotFound, "policy.name", `"nope"`)
	list, err := c.ListBackupPolicies(ctx, &flotillav1.ListBackupPoliciesRequest{})
	if err != nil || len(list.GetPolicies()) != 1 {
		t.Errorf("list = %v, %v", list, err)
	}
	if _, err := c.DeleteBackupPolicy(ctx, &flotillav1.DeleteBackupPolicyRequest{Name: "nightly"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetBackupPolicy(ctx, &flotillav1.GetBackupPolicyRequest{Name: "nightly"})
	wantStatus(t, "get deleted", err, codes.NotFound, "nightly")
	_, err = c.DeleteBackupPolicy(ctx, &flotillav1.DeleteBackupPolicyRequest{Name: "nightly"})
	wantStatus(t, "delete twice", err, codes.NotFound)
}

func TestBackupPolicyValidation(t *testing.T) {
	c, ctx, st := newBackupService(t)
	for _, tc := range []struct {
		name  string
		p     *flotillav1.BackupPolicy
		field string
	}{
		{"no policy", nil, "policy"},
		{"bad name", &flotillav1.BackupPolicy{Name: "Night", Selector: "role=db", Database: "shop"}, "policy.name"},
		{"no selector", &flotillav1.BackupPolicy{Name: "n", Database: "shop"}, "policy.selector"},
		{"no database", &flotillav1.BackupPolicy{Name: "n", Selector: "role=db"}, "policy.database"},
		{"bad cron", &flotillav1.BackupPolicy{Name: "n", Selector: "role=db", Database: "shop", Schedule: "every night"}, "policy.schedule"},
		{"never fires", &flotillav1.BackupPolicy{Name: "n", Selector: "role=db", Database: "shop", Schedule: "0 0 31 2 *"}, "policy.schedule: \"0 0 31 2 *\": never fires"},
		{"bad zone", &flotillav1.BackupPolicy{Name: "n", Selector: "role=db", Database: "shop", TimeZone: "CEST"}, "policy.time_zone"},
		{"retention", &flotillav1.BackupPolicy{Name: "n", Selector: "role=db", Database: "shop", Retention: &flotillav1.BackupRetention{KeepLast: 1001}}, "policy.retention.keep_last"},
	} {
		_, err := c.CreateBackupPolicy(ctx, &flotillav1.CreateBackupPolicyRequest{Policy: tc.p})
		wantStatus(t, tc.name, err, codes.InvalidArgument, tc.field)
	}
	_, err := c.GetBackupPolicy(ctx, &flotillav1.GetBackupPolicyRequest{Name: "../x"})
	wantStatus(t, "get with a bad name", err, codes.InvalidArgument, "name")
	// A policy with a run in progress is not deleted from under it.
	if _, err := c.CreateBackupPolicy(ctx, &flotillav1.CreateBackupPolicyRequest{Policy: &flotillav1.BackupPolicy{Name: "busy", Selector: "role=db", Database: "shop"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.StartBackupPolicyRun(context.Background(), store.BackupPolicyRun{Policy: "busy", Job: store.BackupJobBackup, CommandID: "cmd-run", StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteBackupPolicy(ctx, &flotillav1.DeleteBackupPolicyRequest{Name: "busy"})
	wantStatus(t, "delete while running", err, codes.FailedPrecondition, "cmd-run", "CancelCommand")
}

func TestListBackupsPagesAndFilters(t *testing.T) {
	c, ctx, st := newBackupService(t)
	t0 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	for i := 0; i < 25; i++ {
		b := store.Backup{ID: fmt.Sprintf("cmd-%02d.db-%d", i, i%2+1), AgentID: fmt.Sprintf("db-%d", i%2+1), Database: "shop",
			CommandID: fmt.Sprintf("cmd-%02d", i), FinishedAt: t0.Add(time.Duration(i) * time.Hour), SizeBytes: 1024, SHA256: "ab",
			URI: "file:///var/lib/flotilla/backups/shop.dump", Verified: i != 3}
		if i%5 == 0 {
			b.Policy = "nightly"
		}
		if _, err := st.RecordBackup(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	req := &flotillav1.ListBackupsRequest{AgentId: "db-1", PageSize: 4}
	for pages := 0; ; pages++ {
		resp, err := c.ListBackups(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range resp.GetBackups() {
			ids = append(ids, b.GetId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		if pages > 10 {
			t.Fatal("no last page")
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if len(ids) != 13 || ids[0] != "cmd-24.db-1" || ids[12] != "cmd-00.db-1" {
		t.Errorf("db-1's backups over pages: %v", ids)
	}
	// A token is bound to its filter.
	first, _ := c.ListBackups(ctx, &flotillav1.ListBackupsRequest{AgentId: "db-1", PageSize: 4})
	_, err := c.ListBackups(ctx, &flotillav1.ListBackupsRequest{AgentId: "db-2", PageSize: 4, PageToken: first.GetNextPageToken()})
	wantStatus(t, "token of another filter", err, codes.InvalidArgument, "page_token")
	_, err = c.ListBackups(ctx, &flotillav1.ListBackupsRequest{PageToken: "garbage"})
	wantStatus(t, "garbage token", err, codes.InvalidArgument, "page_token")
	for _, tc := range []struct {
		req  *flotillav1.ListBackupsRequest
		want int
	}{
		{&flotillav1.ListBackupsRequest{Policy: "nightly", PageSize: 100}, 5},
		{&flotillav1.ListBackupsRequest{Verified: flotillav1.VerifiedFilter_VERIFIED_FILTER_UNVERIFIED}, 1},
		{&flotillav1.ListBackupsRequest{Verified: flotillav1.VerifiedFilter_VERIFIED_FILTER_VERIFIED, PageSize: 100}, 24},
		{&flotillav1.ListBackupsRequest{Database: "other"}, 0},
	} {
		resp, err := c.ListBackups(ctx, tc.req)
		if err != nil || len(resp.GetBackups()) != tc.want {
			t.Errorf("ListBackups(%v) = %d backups, %v; want %d", tc.req, len(resp.GetBackups()), err, tc.want)
		}
	}
	for _, tc := range []struct {
		req   *flotillav1.ListBackupsRequest
		field string
	}{
		{&flotillav1.ListBackupsRequest{PageSize: 201}, "page_size"},
		{&flotillav1.ListBackupsRequest{PageSize: -1}, "page_size"},
		{&flotillav1.ListBackupsRequest{Database: "$(id)"}, "database"},
		{&flotillav1.ListBackupsRequest{Policy: "Bad Name"}, "policy"},
		{&flotillav1.ListBackupsRequest{Verified: 7}, "verified"},
	} {
		_, err := c.ListBackups(ctx, tc.req)
		wantStatus(t, tc.field, err, codes.InvalidArgument, tc.field)
	}
	got, err := c.GetBackup(ctx, &flotillav1.GetBackupRequest{Id: "cmd-03.db-2"})
	if err != nil || got.GetBackup().GetVerified() || got.GetBackup().GetAgentId() != "db-2" || got.GetBackup().GetLastDrill() != nil {
		t.Errorf("GetBackup = %v, %v", got, err)
	}
	_, err = c.GetBackup(ctx, &flotillav1.GetBackupRequest{Id: "cmd-99"})
	wantStatus(t, "unknown backup", err, codes.NotFound, "cmd-99", "ListBackups")
	_, err = c.GetBackup(ctx, &flotillav1.GetBackupRequest{})
	wantStatus(t, "no id", err, codes.InvalidArgument, "id")
}

// A dry run of a retention over the catalog: per host, what stays (and
// why) and which recovery points a prune would give up.
func TestRetentionPreview(t *testing.T) {
	c, ctx, st := newBackupService(t)
	if _, err := c.CreateBackupPolicy(ctx, &flotillav1.CreateBackupPolicyRequest{Policy: &flotillav1.BackupPolicy{
		Name: "nightly", Selector: "role=db", Database: "shop", Retention: &flotillav1.BackupRetention{KeepLast: 5}}}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	for day := 0; day < 10; day++ {
		for _, agent := range []string{"db-1", "db-2"} {
			if _, err := st.RecordBackup(context.Background(), store.Backup{ID: fmt.Sprintf("cmd-%d.%s", day, agent), AgentID: agent,
				Database: "shop", Policy: "nightly", FinishedAt: t0.AddDate(0, 0, day), Verified: true, Type: 1,
				Name: fmt.Sprintf("shop-%d", day)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(resp *flotillav1.GetRetentionPreviewResponse, agent string) (kept, pruned int) {
		for _, k := range resp.GetKept() {
			if k.GetBackup().GetAgentId() == agent {
				kept++
			}
		}
		for _, b := range resp.GetPruned() {
			if b.GetAgentId() == agent {
				pruned++
			}
		}
		return kept, pruned
	}
	resp, err := c.GetRetentionPreview(ctx, &flotillav1.GetRetentionPreviewRequest{Name: "nightly"})
	if err != nil {
		t.Fatal(err)
	}
	for _, agent := range []string{"db-1", "db-2"} {
		if kept, pruned := count(resp, agent); kept != 5 || pruned != 5 {
			t.Errorf("%s with the policy's keep_last 5: %d kept, %d pruned", agent, kept, pruned)
		}
	}
	if resp.GetKept()[0].GetBackup().GetName() != "shop-9" || !strings.Contains(strings.Join(resp.GetKept()[0].GetKeptBy(), ","), "newest verified") {
		t.Errorf("first kept = %v", resp.GetKept()[0])
	}
	// Another retention, tried without changing the policy.
	resp, err = c.GetRetentionPreview(ctx, &flotillav1.GetRetentionPreviewRequest{Name: "nightly", Retention: &flotillav1.BackupRetention{KeepLast: 2}})
	if kept, pruned := count(resp, "db-1"); err != nil || kept != 2 || pruned != 8 || !strings.Contains(resp.GetRecoveryPoints()[0], "last 2 backups") {
		t.Errorf("keep_last 2: %d kept, %d pruned, %v, %v", kept, pruned, resp.GetRecoveryPoints(), err)
	}
	// Each pruned dump is an instant that can no longer be recovered.
	if lost := resp.GetLost(); len(lost) != 16 || lost[0].GetType() != flotillav1.BackupType_BACKUP_TYPE_DUMP ||
		!lost[0].GetFrom().AsTime().Equal(lost[0].GetUntil().AsTime()) || !strings.Contains(lost[0].GetDescription(), "the state of 2026-12-") {
		t.Errorf("keep_last 2: lost %v, want the 8 pruned dumps of each host", lost)
	}
	_, err = c.GetRetentionPreview(ctx, &flotillav1.GetRetentionPreviewRequest{Name: "nightly", Retention: &flotillav1.BackupRetention{KeepDaily: 5000}})
	wantStatus(t, "huge retention", err, codes.InvalidArgument, "retention.keep_daily")
	_, err = c.GetRetentionPreview(ctx, &flotillav1.GetRetentionPreviewRequest{Name: "nope"})
	wantStatus(t, "unknown policy", err, codes.NotFound, "nope")
}
