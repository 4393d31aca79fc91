package rollout

import (
	"context"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// StateChange is a rollout's state as just stored: its start (From
// UNSPECIFIED, To PREPARING) or a later change. Listeners (notifications)
// read it; the engine never waits on what they do with it.
type StateChange struct {
	RolloutID  string
	Service    string
	Image      string
	RollbackOf string
	From       flotillav1.RolloutState
	To         flotillav1.RolloutState
	// Message is the reason the engine gave (e.g. the failed gate).
	Message string
	At      time.Time
	// FailedHosts are the hosts that failed so far, with their messages:
	// the evidence of a failure.
	FailedHosts []FailedHost
	// Hosts and Batches size the rollout.
	Hosts   int
	Batches int
	// Remediation is true for an automatic restart (StartRemediation),
	// whose start the remediation driver announces itself.
	Remediation bool
}

// FailedHost is one failed host of a rollout and why it failed.
type FailedHost struct {
	AgentID string
	Step    flotillav1.HostStep
	Message string
}

// AnalysisFailure is an analysis that fails a rollout, as just stored: the
// measurement that decided, with each query's evidence.
type AnalysisFailure struct {
	RolloutID string
	Service   string
	Image     string
	// Batch is the batch whose gate was measured, from 0; -1 for the bake.
	Batch int
	// Reason is the rollout's stop reason (which gate, how many in a row,
	// the decisive results).
	Reason string
	// Results are the deciding measurement's results: query, PromQL,
	// value, threshold and verdict of each query.
	Results []*flotillav1.AnalysisResult
	// AutoRollback is true when the changed hosts are rolled back.
	AutoRollback bool
	At           time.Time
}

// analysisFailed tells the listener an analysis failure the runner stored.
func (r *runner) analysisFailed(ctx context.Context, f *AnalysisFailure) {
	if fn := r.e.cfg.OnAnalysisFailed; fn != nil && f != nil {
		fn(ctx, *f)
	}
}

// stateChanged tells the listener a state the runner stored, if any.
func (r *runner) stateChanged(ctx context.Context, from flotillav1.RolloutState, at time.Time) {
	fn := r.e.cfg.OnStateChange
	if fn == nil {
		return
	}
	sc := StateChange{
		RolloutID: r.rec.ID, Service: r.rec.Service, Image: r.rec.Image, RollbackOf: r.rec.RollbackOf,
		From: from, To: flotillav1.RolloutState(r.rec.State), Message: r.rec.Message, At: at, Hosts: len(r.hosts),
		Remediation: r.def.GetRemediation() != nil,
	}
	for _, h := range r.hosts {
		sc.Batches = max(sc.Batches, h.Batch+1)
		if s := flotillav1.HostStep(h.Step); s == flotillav1.HostStep_HOST_STEP_FAILED || s == flotillav1.HostStep_HOST_STEP_ROLLBACK_FAILED {
			sc.FailedHosts = append(sc.FailedHosts, FailedHost{AgentID: h.AgentID, Step: s, Message: h.Message})
		}
	}
	fn(ctx, sc)
}
