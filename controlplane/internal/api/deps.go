package api

import (
	"context"
	"crypto/x509"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
)

// The services depend on what they call, not on the types that implement it:
// the server passes the real commands.Dispatcher, commands.Manager,
// rollout.Engine, fleet.Registry and pki.CA; a test may pass its own.

// CommandEvents is the side of the command dispatcher that agent streams
// drive (commands.Dispatcher).
type CommandEvents interface {
	// OnConnect (re)sends the agent's commands once its stream is up.
	OnConnect(agentID string)
	// OnEvent records a command event the agent sent.
	OnEvent(ctx context.Context, agentID string, ev *flotillav1.CommandEvent) error
}

// FleetCommands starts and follows fleet commands (commands.Manager).
type FleetCommands interface {
	Start(ctx context.Context, req *flotillav1.RunCommandRequest, createdBy string) (*flotillav1.FleetCommand, error)
	Get(ctx context.Context, fcID string, view flotillav1.CommandView) (*flotillav1.FleetCommand, error)
	List(ctx context.Context, states []flotillav1.FleetCommandState, before string, limit int) ([]*flotillav1.FleetCommand, error)
	Watch(ctx context.Context, fcID string, send func(*flotillav1.WatchCommandResponse) error) error
	Cancel(ctx context.Context, fcID, reason string) (*flotillav1.FleetCommand, error)
}

// Rollouts keeps services and runs rollouts (rollout.Engine).
type Rollouts interface {
	PutService(ctx context.Context, svc *flotillav1.Service) (*flotillav1.Service, error)
	GetService(ctx context.Context, name string) (*flotillav1.Service, error)
	ListServices(ctx context.Context) ([]*flotillav1.Service, error)
	StartRollout(ctx context.Context, req *flotillav1.StartRolloutRequest, createdBy string) (*flotillav1.Rollout, error)
	GetRollout(ctx context.Context, id string) (*flotillav1.Rollout, error)
	ListRollouts(ctx context.Context, q store.RolloutQuery) ([]*flotillav1.Rollout, error)
	WatchRolloutAfter(ctx context.Context, id string, after int64, send func(*flotillav1.RolloutEvent) error) error
	PauseRollout(ctx context.Context, id, reason string) (*flotillav1.Rollout, error)
	ResumeRollout(ctx context.Context, id string) (*flotillav1.Rollout, error)
	AbortRollout(ctx context.Context, id, reason string, rollback bool) (*flotillav1.Rollout, error)
	RollbackService(ctx context.Context, req *flotillav1.RollbackServiceRequest, createdBy string) (*flotillav1.Rollout, error)
}

// CertificateAuthority signs agent and operator certificates (pki.CA).
type CertificateAuthority interface {
	SignAgent(csr []byte, agentID string, validity time.Duration) (*x509.Certificate, []byte, error)
	SignOperator(csr []byte, name, role string, validity time.Duration) (*x509.Certificate, []byte, error)
	// CertificatePEM is the CA bundle handed to agents and operators.
	CertificatePEM() []byte
	// Fingerprint is the SHA-256 of the CA certificate, for pinning.
	Fingerprint() string
}

// AgentRegistry is the live fleet as the agent service changes it
// (fleet.Registry).
type AgentRegistry interface {
	Get(id string) (fleet.Agent, bool)
	Add(rec store.Agent)
	SetCertificate(id, serial string, notAfter time.Time)
	Attach(id string, hello *flotillav1.Hello, peerAddr string) (*fleet.Session, error)
	Detach(s *fleet.Session, reason string)
	Heartbeat(s *fleet.Session, hb *flotillav1.Heartbeat) error
	Touch(s *fleet.Session)
}

// FleetView is the live fleet as operators read it (fleet.Registry).
type FleetView interface {
	Get(id string) (fleet.Agent, bool)
	List(q fleet.Query) (page []fleet.Agent, more bool, total int)
}

// AgentRemover drops a deregistered agent from the live fleet and closes its
// stream (fleet.Registry).
type AgentRemover interface {
	Remove(id string, reason error) bool
}
