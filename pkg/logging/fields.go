package logging

import "go.uber.org/zap"

// The keys both programs use in their logs for the things they share, so
// that one query finds an agent, a command or a caller in the control
// plane's lines, the agent's lines and the audit lines alike. Use the field
// constructors below rather than spelling a key by hand.
const (
	// AgentIDKey is an agent's ID, as the control plane assigned it.
	AgentIDKey = "agent_id"
	// CommandIDKey is a command's ID: a fleet command's or a host command's.
	CommandIDKey = "command_id"
	// RolloutIDKey is a rollout's ID.
	RolloutIDKey = "rollout_id"
	// ServiceKey is a service's name.
	ServiceKey = "service"
	// HostnameKey is the hostname an agent reports; it is not an agent ID.
	HostnameKey = "hostname"
	// PrincipalKey is the caller: "token:<id>", "operator-cert:<name>",
	// "agent:<id>" or "anonymous", the spelling of the audit trail.
	PrincipalKey = "principal"
	// RequestIDKey is the ID of one RPC (the x-request-id header).
	RequestIDKey = "request_id"
	// ControlPlaneAddressKey is the host:port of the control plane an agent
	// dials or is connected to: with several replicas, which one.
	ControlPlaneAddressKey = "control_plane_address"
)

// AgentID is the field naming an agent by its ID.
func AgentID(id string) zap.Field { return zap.String(AgentIDKey, id) }

// CommandID is the field naming a command by its ID.
func CommandID(id string) zap.Field { return zap.String(CommandIDKey, id) }

// RolloutID is the field naming a rollout by its ID.
func RolloutID(id string) zap.Field { return zap.String(RolloutIDKey, id) }

// Service is the field naming a service.
func Service(name string) zap.Field { return zap.String(ServiceKey, name) }

// Hostname is the field naming the hostname an agent reports.
func Hostname(name string) zap.Field { return zap.String(HostnameKey, name) }

// Principal is the field naming the caller, spelled as in the audit trail.
func Principal(p string) zap.Field { return zap.String(PrincipalKey, p) }

// RequestID is the field naming one RPC.
func RequestID(id string) zap.Field { return zap.String(RequestIDKey, id) }

// ControlPlaneAddress is the field naming the control plane address an
// agent dials or is connected to.
func ControlPlaneAddress(addr string) zap.Field { return zap.String(ControlPlaneAddressKey, addr) }
