package server

import (
	"context"

	"flotilla.dev/pkg/run"

	"flotilla.dev/controlplane/internal/remediation"
	"flotilla.dev/controlplane/internal/rollout"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/work"
)

// The work lease of the remediation driver: "remediation/driver".
const (
	remediationLeaseKind = "remediation"
	remediationLeaseID   = "driver"
)

// buildRemediation builds the driver of the services' memory remediation
// policies on the rollout engine; on PostgreSQL one replica drives it, the
// holder of the "remediation/driver" work lease, and its writes carry the
// lease as their fence.
func (s *Server) buildRemediation() error {
	var err error
	s.remediation, err = remediation.New(remediation.Config{
		Store: s.store, Registry: s.registry, Restarter: s.rollouts, Logger: s.log.Named("remediation"),
		Metrics: remediation.NewMetrics(s.metrics), Now: s.opts.now, Interval: s.opts.intervals.RemediationTick,
		RolloutIDPrefix: rollout.IDPrefix, OnEvent: s.onRemediation,
	})
	if err != nil || s.holder == "" {
		return err
	}
	s.remediationClaimer, err = work.New(work.Config{
		Store: s.store, Kind: remediationLeaseKind, Holder: s.holder, TTL: s.cfg.Store.LeaseTTL.Std(),
		Candidates: func(context.Context) ([]string, error) { return []string{remediationLeaseID}, nil },
		Start: func(ctx context.Context, _ string, l store.Lease) {
			_ = s.remediation.Run(ctx, store.FenceOf(l)) // returns when the lease is lost or the server stops
		},
		Logger: s.log.Named("remediation"), Metrics: s.workMetrics(),
	})
	return err
}

// onRemediation notifies and audits an automatic restart or an
// escalation (an OOM kill is an event and a metric only).
func (s *Server) onRemediation(ctx context.Context, ev store.Remediation) {
	s.notifier.OnRemediation(ctx, ev)
	if ev.Action == store.RemediationOOMKill || s.audit == nil {
		return
	}
	s.audit.RecordSystem(ctx, rollout.RemediationActor, "/system/remediation."+ev.Action, remediation.EventProto(ev), ev.Reason+": "+ev.Evidence)
}

// remediationTask is the driver's loop Run starts.
func (s *Server) remediationTask() run.Task {
	if s.remediationClaimer != nil {
		return run.Task{Name: "remediation", Run: s.remediationClaimer.Run}
	}
	return run.Task{Name: "remediation", Run: func(ctx context.Context) error { return s.remediation.Run(ctx, nil) }}
}
