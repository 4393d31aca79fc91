package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
)

// TestRemediationRestartsALeakingContainer drives the whole wiring: a
// service's policy, a scripted agent whose container stays above the
// threshold, and the control plane's driver, which restarts it through a
// rollout by system:remediation (a restart without an image reaches the
// agent), stores and lists the event, audits it and counts it.
func TestRemediationRestartsALeakingContainer(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := h.scriptedFleet("rem", 1, true)[0]
	rollouts, admin := flotillav1.NewRolloutServiceClient(h.dial(h.serverTLS())), h.operatorCtx(h.admin)
	if _, err := rollouts.PutService(admin, &flotillav1.PutServiceRequest{Service: &flotillav1.Service{
		Name: "web", Container: "web", Selector: "fleet=rem", HealthUrl: "http://127.0.0.1:8080/health",
		Remediation: &flotillav1.RemediationPolicy{MemoryPercentOfLimit: 50, SustainedFor: durationpb.New(10 * time.Second),
			MaxRestartsPerHostPerHour: 1}}}); err != nil {
		t.Fatalf("PutService: %v", err)
	}
	started := timestamppb.New(time.Now().Add(-time.Minute))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // the leaking container's heartbeats, every 200ms
		defer close(done)
		for {
			a.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Heartbeat{Heartbeat: &flotillav1.Heartbeat{
				ObservedAt: timestamppb.Now(), App: &flotillav1.AppHealth{Healthy: true},
				Containers: []*flotillav1.ManagedContainer{{Name: "web", ContainerId: "c1", Image: "app:v1", State: "running",
					Resources: &flotillav1.ContainerResources{MemoryWorkingSetBytes: 50 << 20, MemoryLimitBytes: 64 << 20, StartedAt: started}}},
			}}})
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	cmd := a.nextCommandWithin(60 * time.Second)
	close(stop)
	<-done
	restart := cmd.GetSpec().GetRestart()
	if restart == nil || restart.GetContainer() != "web" || restart.GetImage() != "" {
		t.Fatalf("the agent got %v, want a restart of web without an image", cmd.GetSpec())
	}
	list, err := rollouts.ListRemediations(admin, &flotillav1.ListRemediationsRequest{Service: "web"})
	if err != nil || len(list.GetEvents()) != 1 {
		t.Fatalf("ListRemediations = %v, %v; want one restart", list, err)
	}
	ev := list.GetEvents()[0]
	if ev.GetAction() != flotillav1.RemediationAction_REMEDIATION_ACTION_RESTART || ev.GetAgentId() != a.id ||
		!strings.HasPrefix(cmd.GetId(), ev.GetRolloutId()+".") || !strings.Contains(ev.GetEvidence(), "above 32.0 MiB") {
		t.Fatalf("event %v for command %s", ev, cmd.GetId())
	}
	ro, err := rollouts.GetRollout(admin, &flotillav1.GetRolloutRequest{RolloutId: ev.GetRolloutId()})
	if err != nil || ro.GetRollout().GetCreatedBy() != "system:remediation" || ro.GetRollout().GetRemediation().GetReason() != "threshold" {
		t.Fatalf("GetRollout = %v, %v", ro, err)
	}
	// The audit record is written after the event is listed: poll for it.
	var audit []store.AuditEvent
	eventually(t, waitFor, "the restart audited", func() bool {
		audit, err = h.cp.Store().ListAuditEvents(context.Background(), store.AuditQuery{Principal: "system:remediation"})
		return err == nil && len(audit) > 0
	})
	if len(audit) != 1 || audit[0].Method != "/system/remediation.restart" || !strings.Contains(audit[0].Request, a.id) {
		t.Fatalf("audit = %+v; want the restart", audit)
	}
	eventually(t, waitFor, "the restart counted on /metrics", func() bool {
		return strings.Contains(h.scrape(), `flotilla_remediation_restarts_total{reason="threshold",service="web"} 1`)
	})
}
