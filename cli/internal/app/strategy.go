package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// strategyFlags are the strategy overrides of `rollout start`.
type strategyFlags struct {
	file                                   string
	batchSize, batchPercent, canary, maxUn int32
	maxFailures, offline                   string
	pause, minHealthy, deadline, offWait   time.Duration
	bake                                   time.Duration
	autoRollback                           bool
}

// strategyFlagNames are the flags that change the strategy (besides
// --strategy-file).
var strategyFlagNames = []string{"batch-size", "batch-percent", "canary", "max-unavailable", "pause-between",
	"min-healthy-time", "healthy-deadline", "max-failures", "auto-rollback", "offline-hosts", "offline-wait", "bake"}

func (s *strategyFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.file, "strategy-file", "", "the rollout's strategy as YAML (a RolloutStrategy, the API's field names; \"-\": stdin), instead of the service's default")
	fs.Int32Var(&s.batchSize, "batch-size", 0, "hosts per batch (1-100000)")
	fs.Int32Var(&s.batchPercent, "batch-percent", 0, "hosts per batch as a percentage of the plan's hosts (1-100)")
	fs.Int32Var(&s.canary, "canary", 0, "hosts in a first batch of their own (0: no canary)")
	fs.Int32Var(&s.maxUn, "max-unavailable", 0, "hosts of a batch restarted at once (0: the whole batch)")
	fs.DurationVar(&s.pause, "pause-between", 0, "wait between batches (0s-24h)")
	fs.DurationVar(&s.minHealthy, "min-healthy-time", 0, "healthy this long continuously to pass the health gate (0s-1h)")
	fs.DurationVar(&s.deadline, "healthy-deadline", 0, "the time a host has after its restart to pass its health gate")
	fs.StringVar(&s.maxFailures, "max-failures", "", "failed hosts that stop the rollout: a count (1) or a percentage (10%)")
	fs.BoolVar(&s.autoRollback, "auto-rollback", false, "put changed hosts back to their previous image when the rollout fails (--auto-rollback=false: keep)")
	fs.StringVar(&s.offline, "offline-hosts", "", "hosts offline at the start: skip, fail or wait")
	fs.DurationVar(&s.offWait, "offline-wait", 0, "how long --offline-hosts wait waits for a host")
	fs.DurationVar(&s.bake, "bake", 0, "how long the analysis goes on after the last batch (the strategy must have an analysis)")
}

// overrides reports whether any strategy flag or --strategy-file was given.
func (s *strategyFlags) overrides(fs *pflag.FlagSet) bool {
	if s.file != "" {
		return true
	}
	for _, n := range strategyFlagNames {
		if fs.Changed(n) {
			return true
		}
	}
	return false
}

// strategy is the override of `rollout start`: the file's strategy, or a
// copy of base (the service's default strategy) without one, with the
// flags given applied on top. The API takes an override as a whole, so
// fields no flag names keep base's values.
func (a *app) strategy(fs *pflag.FlagSet, s *strategyFlags, base *flotillav1.RolloutStrategy) (*flotillav1.RolloutStrategy, error) {
	out := &flotillav1.RolloutStrategy{}
	if s.file != "" {
		b, err := a.readFile("--strategy-file", s.file)
		if err != nil {
			return nil, err
		}
		if err := parseYAMLMessage(s.file, b, "strategy", out); err != nil {
			return nil, err
		}
	} else if base != nil {
		out = proto.Clone(base).(*flotillav1.RolloutStrategy)
	}
	if err := s.apply(fs, out); err != nil {
		return nil, err
	}
	return out, nil
}

// apply sets on st the fields whose flags were given.
func (s *strategyFlags) apply(fs *pflag.FlagSet, st *flotillav1.RolloutStrategy) error {
	switch {
	case fs.Changed("batch-size") && fs.Changed("batch-percent"):
		return usage("--batch-size: not with --batch-percent (one or the other)")
	case fs.Changed("batch-size"):
		st.Batch = &flotillav1.RolloutStrategy_BatchSize{BatchSize: s.batchSize}
	case fs.Changed("batch-percent"):
		st.Batch = &flotillav1.RolloutStrategy_BatchPercent{BatchPercent: s.batchPercent}
	}
	if fs.Changed("canary") {
		st.Canary = s.canary
	}
	if fs.Changed("max-unavailable") {
		st.MaxUnavailable = s.maxUn
	}
	for _, d := range []struct {
		flag string
		dst  **durationpb.Duration
		v    time.Duration
	}{{"pause-between", &st.PauseBetweenBatches, s.pause}, {"min-healthy-time", &st.MinHealthyTime, s.minHealthy},
		{"healthy-deadline", &st.HealthyDeadline, s.deadline}, {"offline-wait", &st.OfflineWait, s.offWait}} {
		if fs.Changed(d.flag) {
			*d.dst = durationpb.New(d.v)
		}
	}
	if fs.Changed("max-failures") {
		l, err := parseLimit("--max-failures", s.maxFailures)
		if err != nil {
			return err
		}
		st.MaxFailures = l
	}
	if fs.Changed("auto-rollback") {
		st.AutoRollback = s.autoRollback
	}
	if fs.Changed("offline-hosts") {
		v, ok := flotillav1.OfflinePolicy_value["OFFLINE_POLICY_"+strings.ToUpper(s.offline)]
		if !ok || v == 0 {
			return usage("--offline-hosts %q: want skip, fail or wait", s.offline)
		}
		st.OfflineHosts = flotillav1.OfflinePolicy(v)
	}
	if fs.Changed("bake") {
		if st.GetAnalysis() == nil {
			return usage("--bake: the strategy has no analysis to bake with (set analysis in --strategy-file or the service)")
		}
		st.Analysis.Bake = durationpb.New(s.bake)
	}
	return nil
}

// fileStrategy sets req's strategy override from --strategy-file and the
// flags, when the file is given: no call is needed for it.
func (a *app) fileStrategy(fs *pflag.FlagSet, s *strategyFlags, req *flotillav1.StartRolloutRequest) error {
	if s.file == "" {
		return nil
	}
	st, err := a.strategy(fs, s, nil)
	if err != nil {
		return err
	}
	req.Strategy = st
	return nil
}

// flagStrategy sets req's strategy override from the flags without
// --strategy-file: they apply on the service's default strategy, read
// with GetService, since the API replaces the default as a whole.
func (a *app) flagStrategy(ctx context.Context, fs *pflag.FlagSet, s *strategyFlags, req *flotillav1.StartRolloutRequest) error {
	if s.file != "" || !s.overrides(fs) {
		return nil
	}
	resp, err := call(ctx, a.client.Rollout.GetService, &flotillav1.GetServiceRequest{Name: req.Service})
	if err != nil {
		return err
	}
	st, err := a.strategy(fs, s, resp.GetService().GetDefaultStrategy())
	if err != nil {
		return err
	}
	req.Strategy = st
	return nil
}

// strategyLine is a strategy on one line, as the plan prints it.
func strategyLine(s *flotillav1.RolloutStrategy) string {
	batch := "1 host"
	switch b := s.GetBatch().(type) {
	case *flotillav1.RolloutStrategy_BatchSize:
		batch = fmt.Sprintf("%d hosts", b.BatchSize)
	case *flotillav1.RolloutStrategy_BatchPercent:
		batch = fmt.Sprintf("%d%%", b.BatchPercent)
	}
	parts := []string{"batches of " + batch}
	if s.GetCanary() > 0 {
		parts = append(parts, fmt.Sprintf("canary %d", s.GetCanary()))
	}
	if s.GetMaxUnavailable() > 0 {
		parts = append(parts, fmt.Sprintf("max unavailable %d", s.GetMaxUnavailable()))
	}
	if p := s.GetPauseBetweenBatches().AsDuration(); p > 0 {
		parts = append(parts, "pause "+p.String())
	}
	if o := s.GetOfflineHosts(); o != flotillav1.OfflinePolicy_OFFLINE_POLICY_UNSPECIFIED {
		parts = append(parts, "offline hosts: "+enumName(o, "OFFLINE_POLICY_"))
	}
	if an := s.GetAnalysis(); an != nil {
		bake := "bake default"
		if an.GetBake() != nil {
			bake = "bake " + dur(an.GetBake())
		}
		parts = append(parts, fmt.Sprintf("analysis %d queries, %s", len(an.GetQueries()), bake))
	}
	return strings.Join(parts, ", ")
}
