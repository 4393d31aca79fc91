package watch

import (
	"fmt"
	"strings"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// RolloutModel is a rollout as its events describe it: what the views draw
// and where the failure evidence comes from.
type RolloutModel struct {
	// Rollout is the plan as started or read (batches, hosts, strategy).
	Rollout *flotillav1.Rollout
	// State and Message are the rollout's latest state and its reason.
	State   flotillav1.RolloutState
	Message string
	// Batch is the batch being worked on; Started its start.
	Batch   int32
	Started time.Time
	// Hosts by agent ID.
	Hosts map[string]*HostView
	// Failures are the hosts' failed steps, in the order they happened.
	Failures []Failure
	// Last is the time of the latest event.
	Last time.Time
}

// HostView is one host as the events left it.
type HostView struct {
	// AgentID is the host's agent.
	AgentID string
	// Batch is the host's batch in the plan, from 0.
	Batch int32
	// Step is the host's step, Since when it entered it (the event's
	// time), Message the step's details.
	Step    flotillav1.HostStep
	Since   time.Time
	Message string
	// RollingBack is true while the step belongs to the host's rollback.
	RollingBack bool
}

// Failure is a gate that failed on a host, with its evidence.
type Failure struct {
	// AgentID is the host that failed.
	AgentID string
	// Gate is the step the host was in when it failed (HEALTH_CHECK for the
	// health gate, RESTARTING for the restart, ...).
	Gate flotillav1.HostStep
	// Evidence is the server's message: the health response or metric
	// that failed the gate, the command's error.
	Evidence string
	// RollingBack is true when the failure was the rollback's.
	RollingBack bool
	// At is when it failed.
	At time.Time
}

// NewRolloutModel starts a model from the rollout as the server gave it.
func NewRolloutModel(r *flotillav1.Rollout) *RolloutModel {
	m := &RolloutModel{Rollout: r, State: r.GetState(), Message: r.GetMessage(), Batch: r.GetCurrentBatch(),
		Hosts: map[string]*HostView{}}
	for _, h := range r.GetHosts() {
		m.Hosts[h.GetAgentId()] = &HostView{AgentID: h.GetAgentId(), Batch: h.GetBatch(), Step: h.GetStep(),
			Since: h.GetStartedAt().AsTime(), Message: h.GetMessage(), RollingBack: h.GetRollingBack()}
	}
	for _, b := range r.GetBatches() {
		for _, id := range b.GetAgentIds() {
			if _, ok := m.Hosts[id]; !ok {
				m.Hosts[id] = &HostView{AgentID: id, Batch: b.GetIndex(), Step: flotillav1.HostStep_HOST_STEP_PENDING}
			}
		}
	}
	return m
}

// Apply takes one event into the model.
func (m *RolloutModel) Apply(ev *flotillav1.RolloutEvent) {
	at := ev.GetAt().AsTime()
	m.Last = at
	switch k := ev.GetKind().(type) {
	case *flotillav1.RolloutEvent_State:
		m.State, m.Message = k.State.GetState(), k.State.GetMessage()
	case *flotillav1.RolloutEvent_Batch:
		if k.Batch.GetStarted() {
			m.Batch, m.Started = k.Batch.GetIndex(), at
		}
	case *flotillav1.RolloutEvent_Host:
		m.applyHost(k.Host, at)
	}
}

func (m *RolloutModel) applyHost(c *flotillav1.HostStepChange, at time.Time) {
	h, ok := m.Hosts[c.GetAgentId()]
	if !ok {
		h = &HostView{AgentID: c.GetAgentId()}
		m.Hosts[c.GetAgentId()] = h
	}
	switch c.GetStep() {
	case flotillav1.HostStep_HOST_STEP_FAILED, flotillav1.HostStep_HOST_STEP_ROLLBACK_FAILED:
		m.Failures = append(m.Failures, Failure{AgentID: h.AgentID, Gate: h.Step, Evidence: c.GetMessage(),
			RollingBack: c.GetRollingBack(), At: at})
	}
	h.Step, h.Since, h.Message, h.RollingBack = c.GetStep(), at, c.GetMessage(), c.GetRollingBack()
}

// BatchCount is the number of batches in the plan.
func (m *RolloutModel) BatchCount() int { return len(m.Rollout.GetBatches()) }

// GateName says which gate a failed step was, in an operator's words.
func GateName(step flotillav1.HostStep) string {
	switch step {
	case flotillav1.HostStep_HOST_STEP_HEALTH_CHECK:
		return "health gate"
	case flotillav1.HostStep_HOST_STEP_RESTARTING:
		return "restart"
	case flotillav1.HostStep_HOST_STEP_DRAINING:
		return "drain"
	case flotillav1.HostStep_HOST_STEP_UNDRAINING:
		return "undrain"
	case flotillav1.HostStep_HOST_STEP_PENDING:
		return "preparation (image pull)"
	case flotillav1.HostStep_HOST_STEP_STARTING_CANDIDATE:
		return "candidate health gate"
	case flotillav1.HostStep_HOST_STEP_READY, flotillav1.HostStep_HOST_STEP_SWITCHING:
		return "load-balancer switch"
	default:
		return StepName(step)
	}
}

// StepName is a host step without its enum prefix.
func StepName(s flotillav1.HostStep) string {
	return strings.TrimPrefix(s.String(), "HOST_STEP_")
}

// StateName is a rollout state without its enum prefix.
func StateName(s flotillav1.RolloutState) string {
	return strings.TrimPrefix(s.String(), "ROLLOUT_STATE_")
}

// FailureLines are the lines that say which gate failed on which host and
// why, for the end of a rollout that did not succeed.
func (m *RolloutModel) FailureLines() []string {
	var lines []string
	for _, f := range m.Failures {
		what := GateName(f.Gate)
		if f.RollingBack {
			what = "rollback " + what
		}
		lines = append(lines, fmt.Sprintf("failed gate: %s on host %s: %s", what, f.AgentID, f.Evidence))
	}
	return lines
}
