package watch

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// t0 is the recorded rollout's start.
var t0 = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)

func TestMain(m *testing.M) {
	time.Local = time.UTC // the golden files' clock
	os.Exit(m.Run())
}

// recordedRollout is the plan of the recorded stream: three hosts, a
// canary first, one host per batch.
func recordedRollout() *flotillav1.Rollout {
	return &flotillav1.Rollout{Id: "ro-abc", Service: "web", Image: "registry.internal/shop/web:v2",
		State: flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, CreatedAt: timestamppb.New(t0),
		Strategy: &flotillav1.RolloutStrategy{MinHealthyTime: durationpb.New(10 * time.Second),
			HealthyDeadline: durationpb.New(2 * time.Minute)},
		Batches: []*flotillav1.Batch{{Index: 0, Canary: true, AgentIds: []string{"web-1"}},
			{Index: 1, AgentIds: []string{"web-2"}}, {Index: 2, AgentIds: []string{"web-3"}}}}
}

// recordedStream is a rollout whose canary fails its health gate and is
// rolled back, as the control plane streams it.
func recordedStream() []*flotillav1.RolloutEvent {
	s := flotillav1.HostStep_HOST_STEP_RESTARTING
	evs := []*flotillav1.RolloutEvent{
		stateEvent(1, flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, "pulling registry.internal/shop/web:v2 on 3 hosts"),
		stateEvent(2, flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, "image pulled; 3 hosts in 3 batches"),
		{Sequence: 3, At: timestamppb.New(t0.Add(3 * time.Second)), Kind: &flotillav1.RolloutEvent_Batch{
			Batch: &flotillav1.BatchChange{Index: 0, Started: true, Message: "batch 1 of 3: 1 hosts (canary)"}}},
		hostEvent(4, "web-1", s, "restarting web with registry.internal/shop/web:v2"),
		hostEvent(5, "web-1", flotillav1.HostStep_HOST_STEP_HEALTH_CHECK, "waiting for 10s of continuous health within 2m0s"),
		hostEvent(6, "web-1", flotillav1.HostStep_HOST_STEP_FAILED,
			"health gate failed: not healthy for 10s within healthy_deadline 2m0s (last: status 503, database is \"unreachable\")"),
		hostEvent(7, "web-2", flotillav1.HostStep_HOST_STEP_SKIPPED, "not started: canary host web-1 failed"),
		hostEvent(8, "web-3", flotillav1.HostStep_HOST_STEP_SKIPPED, "not started: canary host web-1 failed"),
		stateEvent(9, flotillav1.RolloutState_ROLLOUT_STATE_ROLLING_BACK, "rolling back 1 changed hosts to their previous image"),
	}
	rb := hostEvent(10, "web-1", flotillav1.HostStep_HOST_STEP_ROLLED_BACK, "back on registry.internal/shop/web:v1, healthy")
	rb.GetHost().RollingBack = true
	return append(evs, rb, stateEvent(11, flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, "1 hosts rolled back"))
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestPlainViewGolden: without a terminal, one plain line per event, then
// the failed gate and its evidence.
func TestPlainViewGolden(t *testing.T) {
	var buf bytes.Buffer
	m := NewRolloutModel(recordedRollout())
	v := &PlainRolloutView{W: &buf, Model: m}
	for _, ev := range recordedStream() {
		m.Apply(ev)
		v.Event(ev)
	}
	for _, l := range m.FailureLines() {
		buf.WriteString(l + "\n")
	}
	golden(t, "rollout_plain.golden", buf.String())
}

// TestLiveViewGolden: the live view's frame while the canary is in its
// health gate (its countdown), and after the end.
func TestLiveViewGolden(t *testing.T) {
	m := NewRolloutModel(recordedRollout())
	evs := recordedStream()
	for _, ev := range evs[:5] {
		m.Apply(ev)
	}
	mid := strings.Join(RenderRollout(m, t0.Add(12*time.Second)), "\n")
	for _, ev := range evs[5:] {
		m.Apply(ev)
	}
	end := strings.Join(RenderRollout(m, t0.Add(20*time.Second)), "\n")
	golden(t, "rollout_live.golden", mid+"\n---\n"+end+"\n")
}

// TestLiveViewRedrawsInPlace: every frame after the first moves the cursor
// back over the previous one and clears it.
func TestLiveViewRedrawsInPlace(t *testing.T) {
	var buf bytes.Buffer
	m := NewRolloutModel(recordedRollout())
	v := &LiveRolloutView{W: &buf, Model: m, Width: 60, Now: func() time.Time { return t0.Add(12 * time.Second) }}
	evs := recordedStream()
	m.Apply(evs[0])
	v.Event(evs[0])
	first := buf.Len()
	lines := strings.Count(buf.String(), "\n")
	m.Apply(evs[1])
	v.Event(evs[1])
	second := buf.String()[first:]
	if want := "\x1b[" + strconv.Itoa(lines) + "A\r\x1b[J"; !strings.HasPrefix(second, want) {
		t.Errorf("second frame starts %q; want %q (up %d lines, clear)", second[:min(len(second), 12)], want, lines)
	}
	for _, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		if n := len([]rune(stripANSI(l))); n > 60 {
			t.Errorf("line of %d runes wider than the terminal: %q", n, l)
		}
	}
}

func stripANSI(s string) string {
	for {
		i := strings.Index(s, "\x1b[")
		if i < 0 {
			return strings.TrimPrefix(s, "\r")
		}
		j := i + 2
		for j < len(s) && (s[j] < 'A' || s[j] > 'Z') {
			j++
		}
		s = s[:i] + s[min(j+1, len(s)):]
	}
}

// TestCommandViewsGolden: a recorded fleet command as plain lines and as
// the live view's frame while one host pulls and one has failed.
func TestCommandViewsGolden(t *testing.T) {
	at := func(s int) *timestamppb.Timestamp { return timestamppb.New(t0.Add(time.Duration(s) * time.Second)) }
	snap := func(state flotillav1.FleetCommandState, sum map[string]int32) *flotillav1.WatchCommandResponse {
		return &flotillav1.WatchCommandResponse{Body: &flotillav1.WatchCommandResponse_Snapshot{Snapshot: &flotillav1.FleetCommand{
			Id: "cmd-1", State: state, Summary: sum, CreatedAt: at(0)}}}
	}
	event := func(s int, agent string, state flotillav1.CommandState, msg string, p *flotillav1.CommandProgress) *flotillav1.WatchCommandResponse {
		return &flotillav1.WatchCommandResponse{Body: &flotillav1.WatchCommandResponse_Event{Event: &flotillav1.HostCommandEvent{
			AgentId: agent, Event: &flotillav1.CommandEvent{State: state, Message: msg, At: at(s), Progress: p}}}}
	}
	stream := []*flotillav1.WatchCommandResponse{
		snap(flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING, map[string]int32{"pending": 2}),
		event(1, "web-1", flotillav1.CommandState_COMMAND_STATE_RUNNING, "pulling layer 3f2a", &flotillav1.CommandProgress{Current: 50, Total: 200}),
		event(2, "web-2", flotillav1.CommandState_COMMAND_STATE_FAILED, "pull access denied", nil),
		event(6, "web-1", flotillav1.CommandState_COMMAND_STATE_SUCCEEDED, "pulled", nil),
		snap(flotillav1.FleetCommandState_FLEET_COMMAND_STATE_FAILED, map[string]int32{"succeeded": 1, "failed": 1}),
	}
	var plain strings.Builder
	m := NewCommandModel()
	var mid string
	for i, msg := range stream {
		plain.WriteString(CommandLine(msg) + "\n")
		m.Apply(msg)
		if i == 2 {
			mid = strings.Join(RenderCommand(m, t0.Add(4*time.Second)), "\n")
		}
	}
	golden(t, "command_views.golden", plain.String()+"---\n"+mid+"\n")
}
