package server_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// The containers' resources an agent reports reach GetAgent and
// ListAgents as sent.
func TestContainerResourcesInGetAndListAgents(t *testing.T) {
	h := start(t)
	a := h.scriptedFleet("res", 1, true)[0]
	sent := &flotillav1.ManagedContainer{Name: "web", ContainerId: "c1", Image: "app:1", State: "running",
		Resources: &flotillav1.ContainerResources{CpuPercent: 12.5, MemoryWorkingSetBytes: 48 << 20, MemoryUsageBytes: 60 << 20,
			MemoryLimitBytes: 128 << 20, RestartCount: 2, OomKills: 1}}
	a.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Heartbeat{Heartbeat: &flotillav1.Heartbeat{
		Containers: []*flotillav1.ManagedContainer{sent}}}})
	ctx := h.operatorCtx(h.admin)
	var got *flotillav1.Agent
	eventually(t, waitFor, "GetAgent to show the container's resources", func() bool {
		resp, err := h.fleet().GetAgent(ctx, &flotillav1.GetAgentRequest{AgentId: a.id})
		if err != nil {
			t.Fatalf("GetAgent: %v", err)
		}
		got = resp.GetAgent()
		return len(got.GetContainers()) == 1 && got.GetContainers()[0].GetResources() != nil
	})
	if !proto.Equal(got.GetContainers()[0], sent) {
		t.Errorf("GetAgent container %v, want %v", got.GetContainers()[0], sent)
	}
	list, err := h.fleet().ListAgents(ctx, &flotillav1.ListAgentsRequest{})
	if err != nil {
		t.Fatalf("ListAgents: %v", err)
	}
	for _, ag := range list.GetAgents() {
		if ag.GetId() == a.id && (len(ag.GetContainers()) != 1 || !proto.Equal(ag.GetContainers()[0], sent)) {
			t.Errorf("ListAgents containers %v, want [%v]", ag.GetContainers(), sent)
		}
	}
}
