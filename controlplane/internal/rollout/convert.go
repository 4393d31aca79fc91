package rollout

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
)

// Terminal reports whether a rollout state is terminal: nothing follows it.
func Terminal(s flotillav1.RolloutState) bool {
	switch s {
	case flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED, flotillav1.RolloutState_ROLLOUT_STATE_FAILED,
		flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, flotillav1.RolloutState_ROLLOUT_STATE_ABORTED,
		flotillav1.RolloutState_ROLLOUT_STATE_ROLLBACK_FAILED:
		return true
	}
	return false
}

// activeStep reports whether a host step has a command or a gate in progress.
func activeStep(s flotillav1.HostStep) bool {
	switch s {
	case flotillav1.HostStep_HOST_STEP_DRAINING, flotillav1.HostStep_HOST_STEP_RESTARTING,
		flotillav1.HostStep_HOST_STEP_HEALTH_CHECK, flotillav1.HostStep_HOST_STEP_UNDRAINING,
		flotillav1.HostStep_HOST_STEP_STARTING_CANDIDATE, flotillav1.HostStep_HOST_STEP_SWITCHING:
		// READY is neither active nor terminal: it waits for the rollout's
		// switch, with no command of its own.
		return true
	}
	return false
}

// terminalStep reports whether a host is done with its current pass.
func terminalStep(s flotillav1.HostStep) bool {
	switch s {
	case flotillav1.HostStep_HOST_STEP_DONE, flotillav1.HostStep_HOST_STEP_FAILED, flotillav1.HostStep_HOST_STEP_SKIPPED,
		flotillav1.HostStep_HOST_STEP_ROLLED_BACK, flotillav1.HostStep_HOST_STEP_ROLLBACK_FAILED:
		return true
	}
	return false
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func serviceProto(s store.Service, currentImage string) (*flotillav1.Service, error) {
	out := &flotillav1.Service{}
	if err := proto.Unmarshal(s.Spec, out); err != nil {
		return nil, err
	}
	out.CreatedAt, out.UpdatedAt, out.CurrentImage = ts(s.CreatedAt), ts(s.UpdatedAt), currentImage
	return out, nil
}

// rolloutProto renders a stored rollout: its definition, its progress and,
// when given, its hosts.
func rolloutProto(rec store.Rollout, hosts []store.RolloutHost) (*flotillav1.Rollout, error) {
	out := &flotillav1.Rollout{}
	if err := proto.Unmarshal(rec.Definition, out); err != nil {
		return nil, err
	}
	out.State = flotillav1.RolloutState(rec.State)
	out.Message = rec.Message
	out.CurrentBatch = int32(rec.CurrentBatch)
	out.FinishedAt = ts(rec.FinishedAt)
	out.BakeUntil = ts(rec.BakeUntil)
	out.ResumeAt = ts(rec.ResumeAt)
	st, err := analysisStatus(rec.Analysis)
	if err != nil {
		return nil, err
	}
	out.Analysis = st
	if !Terminal(out.State) && out.State != flotillav1.RolloutState_ROLLOUT_STATE_ROLLING_BACK {
		out.KeepUntil = ts(keepUntil(withDefaults(out.GetStrategy()), len(out.GetBatches()), storeRolloutView{rec.CurrentBatch, rec.BatchFinishedAt}))
	}
	for _, h := range hosts {
		out.Hosts = append(out.Hosts, hostProto(h))
	}
	return out, nil
}

func hostProto(h store.RolloutHost) *flotillav1.RolloutHost {
	return &flotillav1.RolloutHost{
		AgentId: h.AgentID, Batch: int32(h.Batch), Step: flotillav1.HostStep(h.Step), PreviousImage: h.PreviousImage,
		Message: h.Message, StartedAt: ts(h.StartedAt), FinishedAt: ts(h.FinishedAt), RollingBack: h.RollingBack,
	}
}

func eventProto(ev store.RolloutEvent) (*flotillav1.RolloutEvent, error) {
	out := &flotillav1.RolloutEvent{}
	if err := proto.Unmarshal(ev.Event, out); err != nil {
		return nil, err
	}
	out.Sequence, out.At = ev.Sequence, ts(ev.At)
	return out, nil
}

// encodeEvent serializes an event's kind; sequence and time are columns.
func encodeEvent(at time.Time, ev *flotillav1.RolloutEvent) store.RolloutEvent {
	b, err := proto.Marshal(ev)
	if err != nil {
		// A message built here from plain fields always encodes.
		panic(err)
	}
	return store.RolloutEvent{At: at, Event: b}
}

func stateEvent(at time.Time, state flotillav1.RolloutState, msg string) store.RolloutEvent {
	return pauseEvent(at, state, msg, time.Time{})
}

// pauseEvent is a state event that may say when a deploy window's pause
// ends (resumeAt; zero for none).
func pauseEvent(at time.Time, state flotillav1.RolloutState, msg string, resumeAt time.Time) store.RolloutEvent {
	return encodeEvent(at, &flotillav1.RolloutEvent{Kind: &flotillav1.RolloutEvent_State{State: &flotillav1.RolloutStateChange{
		State: state, Message: msg, ResumeAt: ts(resumeAt)}}})
}

func batchEvent(at time.Time, index int, started bool, msg string) store.RolloutEvent {
	return encodeEvent(at, &flotillav1.RolloutEvent{Kind: &flotillav1.RolloutEvent_Batch{Batch: &flotillav1.BatchChange{
		Index: int32(index), Started: started, Finished: !started, Message: msg}}})
}

func hostEvent(at time.Time, h *store.RolloutHost) store.RolloutEvent {
	return encodeEvent(at, &flotillav1.RolloutEvent{Kind: &flotillav1.RolloutEvent_Host{Host: &flotillav1.HostStepChange{
		AgentId: h.AgentID, Step: flotillav1.HostStep(h.Step), Message: h.Message, RollingBack: h.RollingBack}}})
}
