package server_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/server/servertest"
)

// TestRolloutServiceWiring checks what server.go adds for rollouts: the
// service is registered behind the auth policies, and active rollouts are
// resumed by a restarted control plane.
func TestRolloutServiceWiring(t *testing.T) {
	dir := t.TempDir()
	h := start(t, servertest.WithDataDir(dir))
	viewer := h.apiToken("viewer")
	rollouts := flotillav1.NewRolloutServiceClient(h.dial(h.serverTLS()))
	admin := h.operatorCtx(h.admin)
	svc := &flotillav1.Service{Name: "web", Container: "app", Selector: "role=web"}

	if _, err := rollouts.ListServices(context.Background(), &flotillav1.ListServicesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v, want Unauthenticated", err)
	}
	if _, err := rollouts.PutService(h.operatorCtx(viewer), &flotillav1.PutServiceRequest{Service: svc}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("viewer PutService: %v, want PermissionDenied", err)
	}
	if _, err := rollouts.PutService(admin, &flotillav1.PutServiceRequest{Service: svc}); err != nil {
		t.Fatalf("PutService: %v", err)
	}
	if list, err := rollouts.ListServices(h.operatorCtx(viewer), &flotillav1.ListServicesRequest{}); err != nil || len(list.GetServices()) != 1 {
		t.Fatalf("viewer ListServices = %v, %v", list, err)
	}
	if _, err := rollouts.PutService(admin, &flotillav1.PutServiceRequest{Service: &flotillav1.Service{Name: "Bad"}}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "service.name") {
		t.Fatalf("bad service: %v", err)
	}

	// An agent that never connects, kept in the plan by the WAIT policy:
	// the rollout stays in PREPARING across a restart.
	if _, _, err := h.register(h.joinToken(&flotillav1.CreateJoinTokenRequest{}), "web-1", map[string]string{"role": "web"}); err != nil {
		t.Fatal(err)
	}
	start := &flotillav1.StartRolloutRequest{Service: "web", Image: "registry.example/app:2.0",
		Strategy: &flotillav1.RolloutStrategy{OfflineHosts: flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT}}
	if _, err := rollouts.StartRollout(h.operatorCtx(viewer), start); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("viewer StartRollout: %v, want PermissionDenied", err)
	}
	started, err := rollouts.StartRollout(admin, start)
	if err != nil {
		t.Fatalf("StartRollout: %v", err)
	}
	id := started.GetRollout().GetId()

	h2 := h.restart()
	rollouts = flotillav1.NewRolloutServiceClient(h2.dial(h2.serverTLS()))
	admin = h2.operatorCtx(h2.admin)
	got, err := rollouts.GetRollout(h2.operatorCtx(viewer), &flotillav1.GetRolloutRequest{RolloutId: id})
	if err != nil || got.GetRollout().GetState() != flotillav1.RolloutState_ROLLOUT_STATE_PREPARING {
		t.Fatalf("after restart: %v, %v", got, err)
	}
	// The resumed runner answers: abort ends the rollout.
	if _, err := rollouts.AbortRollout(admin, &flotillav1.AbortRolloutRequest{RolloutId: id, Reason: "test"}); err != nil {
		t.Fatalf("AbortRollout after restart: %v", err)
	}
	stream, err := rollouts.WatchRollout(h2.operatorCtx(viewer), &flotillav1.WatchRolloutRequest{RolloutId: id})
	if err != nil {
		t.Fatal(err)
	}
	var last *flotillav1.RolloutEvent
	for {
		msg, err := stream.Recv()
		if err != nil {
			break
		}
		last = msg.GetEvent()
	}
	if last.GetState().GetState() != flotillav1.RolloutState_ROLLOUT_STATE_ABORTED {
		t.Fatalf("watch ended with %v, want the ABORTED state", last)
	}
}
