package api

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
)

var stateToProto = map[string]flotillav1.AgentState{
	store.AgentConnected:    flotillav1.AgentState_AGENT_STATE_CONNECTED,
	store.AgentDisconnected: flotillav1.AgentState_AGENT_STATE_DISCONNECTED,
	store.AgentLost:         flotillav1.AgentState_AGENT_STATE_LOST,
}

var stateFromProto = map[flotillav1.AgentState]string{
	flotillav1.AgentState_AGENT_STATE_CONNECTED:    store.AgentConnected,
	flotillav1.AgentState_AGENT_STATE_DISCONNECTED: store.AgentDisconnected,
	flotillav1.AgentState_AGENT_STATE_LOST:         store.AgentLost,
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func agentToProto(a fleet.Agent) *flotillav1.Agent {
	rec := a.Record
	out := &flotillav1.Agent{
		Id:                   rec.ID,
		Hostname:             rec.Hostname,
		Labels:               rec.Labels,
		State:                stateToProto[rec.State],
		Version:              rec.Version,
		RegisteredAt:         ts(rec.RegisteredAt),
		ConnectedAt:          ts(rec.ConnectedAt),
		LastSeenAt:           ts(rec.LastSeenAt),
		LastHeartbeat:        a.LastHeartbeat,
		PeerAddress:          rec.PeerAddress,
		CertificateExpiresAt: ts(rec.CertNotAfter),
		StateChangedAt:       ts(rec.StateChangedAt),
		StateReason:          rec.StateReason,
	}
	if a.Hello != nil {
		out.Capabilities = a.Hello.GetCapabilities()
		out.Containers = a.Hello.GetContainers()
	}
	// The heartbeat's container list is newer than the hello's.
	if hb := a.LastHeartbeat; hb != nil && len(hb.GetContainers()) > 0 {
		out.Containers = hb.GetContainers()
	}
	return out
}
