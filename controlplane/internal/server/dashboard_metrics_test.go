package server_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
)

// The shipped alert rules and dashboard, from this package's directory.
var (
	alertRulesFile = filepath.Join("..", "..", "..", "deploy", "prometheus", "flotilla-alerts.yml")
	dashboardFile  = filepath.Join("..", "..", "..", "deploy", "grafana", "flotilla-fleet.json")
)

// metricName matches the control plane's metric names in a PromQL
// expression: its own (flotilla_) and the gRPC server's.
var metricName = regexp.MustCompile(`\b(?:flotilla|grpc_server)_[a-z0-9_]+`)

// referencedMetrics are the metric families exprs name: a histogram's
// _bucket, _sum and _count series are its family's.
func referencedMetrics(exprs []string) []string {
	var names []string
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				n = strings.TrimSuffix(n, suffix)
			}
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// alertExpressions are the expr of every rule in the rules file.
func alertExpressions(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(alertRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("%s: %v", alertRulesFile, err)
	}
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Expr == "" {
				t.Errorf("%s: rule %q has no expr", alertRulesFile, r.Alert)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

// dashboardPanel is what the tests read of a Grafana panel.
type dashboardPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

// dashboard reads the dashboard's panels and its template variables'
// queries.
func dashboard(t *testing.T) ([]dashboardPanel, []string) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var queries []string
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(string); ok {
			queries = append(queries, q)
		}
	}
	return d.Panels, queries
}

// Every metric the alert rules and the dashboard reference is exported by
// a running control plane whose agent has sent a full heartbeat and run a
// backup: a renamed or dropped metric fails here, not silently in
// Prometheus. Every panel also states its unit.
func TestDashboardAndAlertMetricsExported(t *testing.T) {
	t.Parallel()
	panels, queries := dashboard(t)
	exprs := alertExpressions(t)
	for _, p := range panels {
		if p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("dashboard panel %q has no unit", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	exprs = append(exprs, queries...)
	names := referencedMetrics(exprs)
	if len(names) < 20 {
		t.Fatalf("only %d metric names found in the rules and dashboard (%v): is the regexp or the parsing broken?", len(names), names)
	}

	exposition := scrapeBusyControlPlane(t)
	for _, n := range names {
		if !strings.Contains(exposition, "\n# TYPE "+n+" ") {
			t.Errorf("%s is referenced by the alert rules or the dashboard but not exported on /metrics", n)
		}
	}
}

// scrapeBusyControlPlane starts a control plane, connects an agent that
// reports every reading a heartbeat carries, runs a successful backup on
// it and returns a scrape of /metrics.
func scrapeBusyControlPlane(t *testing.T) string {
	t.Helper()
	h := start(t)
	cc := h.commands()
	a := h.scriptedFleet("dash", 1, true)[0]

	at := timestamppb.New(time.Unix(1_700_000_000, 0))
	a.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Heartbeat{Heartbeat: &flotillav1.Heartbeat{
		ObservedAt: at,
		Host: &flotillav1.HostMetrics{CpuPercent: 10, MemoryPercent: 20, Load1: 0.5,
			Disks: []*flotillav1.DiskUsage{{Path: "/", UsedPercent: 40}}},
		App: &flotillav1.AppHealth{Healthy: true, Latency: durationpb.New(20 * time.Millisecond)},
		Databases: []*flotillav1.DatabaseStats{{Name: "shop", Connections: 3, WalArchiver: &flotillav1.WalArchiverStats{
			ArchivedCount: 10, FailedCount: 1, LastArchivedAt: at,
			ArchiveTimelines: []*flotillav1.WalTimelineContinuity{{Timeline: 1, ArchivedSegments: 10}}}}},
		Containers: []*flotillav1.ManagedContainer{{Name: "web", ContainerId: "c1", State: "running",
			Resources: &flotillav1.ContainerResources{CpuPercent: 5, MemoryWorkingSetBytes: 30 << 20, MemoryUsageBytes: 40 << 20,
				MemoryLimitBytes: 64 << 20, RestartCount: 1, OomKills: 1}}},
	}}})
	eventually(t, waitFor, "the full heartbeat to be recorded", func() bool {
		got, ok := h.srv.Registry().Get(a.id)
		return ok && proto.Equal(got.LastHeartbeat.GetObservedAt(), at)
	})

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: backupSpec("shop"), AgentIds: []string{a.id}})
	cmd := a.nextCommand()
	a.event(cmd.GetId(), stateSucceeded, "backed up", &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Backup{Backup: &flotillav1.BackupResult{
		Database: "shop", Path: "/var/backups/shop.dump", SizeBytes: 1024, Sha256: "ab12", VerifiedEntries: 1,
	}}})
	cc.waitState(fc.GetId(), fleetSucceeded)
	backupPolicyAndDrill(t, h, cmd.GetId())
	subscribe(t, h)
	remediationPolicy(t, h)
	return "\n" + h.scrape()
}

// remediationPolicy gives the busy control plane a service with a
// remediation policy, and waits for the driver to see it: its series
// exist at 0 from then on.
func remediationPolicy(t *testing.T, h *harness) {
	t.Helper()
	rs := flotillav1.NewRolloutServiceClient(h.dial(h.serverTLS()))
	if _, err := rs.PutService(h.operatorCtx(h.admin), &flotillav1.PutServiceRequest{Service: &flotillav1.Service{
		Name: "web", Container: "web", Selector: "role=web", HealthUrl: "http://127.0.0.1:8080/health",
		Remediation: &flotillav1.RemediationPolicy{MemoryPercentOfLimit: 90}}}); err != nil {
		t.Fatalf("PutService: %v", err)
	}
	eventually(t, waitFor, "the remediation driver to take the policy", func() bool {
		return strings.Contains(h.scrape(), `flotilla_remediation_escalations_total{service="web"} 0`)
	})
}

// backupPolicyAndDrill gives the busy control plane a backup policy and a
// drill of the catalogued backup id, and ticks the backup scheduler, so
// that the policy and drill gauges have series.
func backupPolicyAndDrill(t *testing.T, h *harness, id string) {
	t.Helper()
	ctx := h.operatorCtx(h.admin)
	bs := flotillav1.NewBackupServiceClient(h.dial(h.serverTLS()))
	if _, err := bs.CreateBackupPolicy(ctx, &flotillav1.CreateBackupPolicyRequest{Policy: &flotillav1.BackupPolicy{
		Name: "nightly", Selector: "role=db", Database: "shop"}}); err != nil {
		t.Fatalf("CreateBackupPolicy: %v", err)
	}
	eventually(t, waitFor, "the backup to be catalogued", func() bool {
		_, err := bs.GetBackup(ctx, &flotillav1.GetBackupRequest{Id: id})
		return err == nil
	})
	if err := h.cp.Store().RecordBackupDrill(context.Background(), store.BackupDrill{BackupID: id, At: time.Now(), Succeeded: true}); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.BackupScheduler().Tick(context.Background()); err != nil {
		t.Fatalf("backup scheduler tick: %v", err)
	}
}

// subscribe gives the busy control plane a notification subscription, so
// that its delivery series exist (at 0, before any delivery).
func subscribe(t *testing.T, h *harness) {
	t.Helper()
	ns := flotillav1.NewNotificationServiceClient(h.dial(h.serverTLS()))
	if _, err := ns.CreateSubscription(h.operatorCtx(h.admin), &flotillav1.CreateSubscriptionRequest{
		Name:   "oncall",
		Events: []flotillav1.NotificationEventType{flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_ROLLOUT_FAILED},
		Sink:   &flotillav1.Sink{Kind: &flotillav1.Sink_Webhook{Webhook: &flotillav1.WebhookSink{Url: "https://hooks.example.com/flotilla"}}},
	}); err != nil {
		t.Fatalf("CreateSubscription: %v", err)
	}
}

// The name extraction the test above relies on: suffixes of a histogram's
// series are stripped, other names kept whole, duplicates dropped.
func TestReferencedMetrics(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`flotilla_agents{state="lost"} > 0`, []string{"flotilla_agents"}},
		{`histogram_quantile(0.95, sum by (le) (rate(flotilla_rollout_batch_duration_seconds_bucket[5m])))`,
			[]string{"flotilla_rollout_batch_duration_seconds"}},
		{`rate(flotilla_command_duration_seconds_sum[5m]) / rate(flotilla_command_duration_seconds_count[5m])`,
			[]string{"flotilla_command_duration_seconds"}},
		{`sum(rate(grpc_server_handled_total[5m])) + up{job="flotilla-controlplane"}`, []string{"grpc_server_handled_total"}},
		{`(flotilla_agent_state == 1) * on (agent) group_left (hostname) flotilla_agent_info`,
			[]string{"flotilla_agent_info", "flotilla_agent_state"}},
		{`time()`, nil},
	}
	for _, tt := range tests {
		if got := referencedMetrics([]string{tt.expr}); !slices.Equal(got, tt.want) {
			t.Errorf("referencedMetrics(%q) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}
