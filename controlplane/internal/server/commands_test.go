package server_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/server/servertest"
)

// Command states, shortened.
const (
	statePending   = flotillav1.CommandState_COMMAND_STATE_PENDING
	stateAccepted  = flotillav1.CommandState_COMMAND_STATE_ACCEPTED
	stateRunning   = flotillav1.CommandState_COMMAND_STATE_RUNNING
	stateSucceeded = flotillav1.CommandState_COMMAND_STATE_SUCCEEDED
	stateFailed    = flotillav1.CommandState_COMMAND_STATE_FAILED
	stateCancelled = flotillav1.CommandState_COMMAND_STATE_CANCELLED
	stateTimedOut  = flotillav1.CommandState_COMMAND_STATE_TIMED_OUT
	stateSkipped   = flotillav1.CommandState_COMMAND_STATE_SKIPPED

	fleetRunning   = flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING
	fleetSucceeded = flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED
	fleetFailed    = flotillav1.FleetCommandState_FLEET_COMMAND_STATE_FAILED
	fleetCancelled = flotillav1.FleetCommandState_FLEET_COMMAND_STATE_CANCELLED
)

func count(n int32) *flotillav1.Limit {
	return &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: n}}
}

func percent(n int32) *flotillav1.Limit {
	return &flotillav1.Limit{Kind: &flotillav1.Limit_Percent{Percent: n}}
}

func restartSpec() *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{Restart: &flotillav1.RestartCommand{
		Container: "web", Image: "registry.example.com/shop/web:1.4.2", StopTimeout: durationpb.New(15 * time.Second),
	}}}
}

func pullSpec() *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: "registry.example.com/shop/web:1.4.2"}}}
}

func backupSpec(db string) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: db}}}
}

func drainSpec() *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drain{Drain: &flotillav1.DrainCommand{Upstream: "shop", Server: "10.0.0.1:8080"}}}
}

func restartResult(agentID string) *flotillav1.CommandResult {
	return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Restart{Restart: &flotillav1.RestartResult{
		Container: "web", ContainerId: "new-" + agentID, Image: "registry.example.com/shop/web:1.4.2", ImageId: "sha256:new",
		PreviousContainerId: "old-" + agentID, PreviousImage: "registry.example.com/shop/web:1.4.1", PreviousImageId: "sha256:old",
		PreviousConfigJson: []byte(`{"Config":{"Image":"registry.example.com/shop/web:1.4.1"}}`),
	}}}
}

func pullResult() *flotillav1.CommandResult {
	return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Pull{Pull: &flotillav1.PullResult{
		Image: "registry.example.com/shop/web:1.4.2", ImageId: "sha256:0123", RepoDigest: "registry.example.com/shop/web@sha256:4567",
	}}}
}

// commandClient bundles the operator calls the command tests make.
type commandClient struct {
	t   *testing.T
	fc  flotillav1.FleetServiceClient
	ctx context.Context
}

func (h *harness) commands() *commandClient {
	return &commandClient{t: h.t, fc: h.fleet(), ctx: h.operatorCtx(h.admin)}
}

func (c *commandClient) run(req *flotillav1.RunCommandRequest) *flotillav1.FleetCommand {
	c.t.Helper()
	resp, err := c.fc.RunCommand(c.ctx, req)
	if err != nil {
		c.t.Fatalf("RunCommand: %v", err)
	}
	return resp.GetCommand()
}

func (c *commandClient) get(id string) *flotillav1.FleetCommand {
	c.t.Helper()
	resp, err := c.fc.GetCommand(c.ctx, &flotillav1.GetCommandRequest{CommandId: id})
	if err != nil {
		c.t.Fatalf("GetCommand(%s): %v", id, err)
	}
	return resp.GetCommand()
}

// waitState polls GetCommand until the fleet command is in state.
func (c *commandClient) waitState(id string, state flotillav1.FleetCommandState) *flotillav1.FleetCommand {
	c.t.Helper()
	var last *flotillav1.FleetCommand
	eventually(c.t, waitFor, fmt.Sprintf("command %s to be %v", id, state), func() bool {
		last = c.get(id)
		return last.GetState() == state
	})
	return last
}

// host returns agentID's entry of fc.
func host(t *testing.T, fc *flotillav1.FleetCommand, agentID string) *flotillav1.HostCommand {
	t.Helper()
	for _, hc := range fc.GetHosts() {
		if hc.GetAgentId() == agentID {
			return hc
		}
	}
	t.Fatalf("command %s has no host %s: %v", fc.GetId(), agentID, fc.GetHosts())
	return nil
}

// released returns the agents whose host command got its turn (a deadline
// is set when a host is released, never before).
func released(fc *flotillav1.FleetCommand) []string {
	var out []string
	for _, hc := range fc.GetHosts() {
		if hc.GetDeadline() != nil {
			out = append(out, hc.GetAgentId())
		}
	}
	return out
}

// inFlight returns the agents released and not finished.
func inFlight(fc *flotillav1.FleetCommand) []string {
	var out []string
	for _, hc := range fc.GetHosts() {
		if hc.GetDeadline() != nil && hc.GetFinishedAt() == nil {
			out = append(out, hc.GetAgentId())
		}
	}
	return out
}

func ids(agents []*scriptedAgent) []string {
	out := make([]string, len(agents))
	for i, a := range agents {
		out[i] = a.id
	}
	return out
}

func wantSummary(t *testing.T, fc *flotillav1.FleetCommand, want map[string]int32) {
	t.Helper()
	if !maps.Equal(fc.GetSummary(), want) {
		t.Errorf("summary = %v, want %v", fc.GetSummary(), want)
	}
}

func TestRunCommandOneHostAtATime(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	agents := h.scriptedFleet("seq", 3, true)
	spec := restartSpec()

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: spec, Selector: "fleet=seq", MaxConcurrency: count(1), Reason: "rolling restart"})
	id := fc.GetId()
	if fc.GetState() != fleetRunning || fc.GetSelector() != "fleet=seq" || !slices.Equal(fc.GetAgentIds(), ids(agents)) ||
		fc.GetTimeout().AsDuration() != 5*time.Minute || fc.GetReason() != "rolling restart" ||
		!strings.HasPrefix(fc.GetCreatedBy(), "operator:") || fc.GetCreatedAt() == nil || fc.GetFinishedAt() != nil {
		t.Fatalf("RunCommand returned %v", fc)
	}
	for i, hc := range fc.GetHosts() {
		if hc.GetAgentId() != agents[i].id || hc.GetCommandId() != id+"."+agents[i].id || hc.GetState() != statePending {
			t.Fatalf("host %d = %v, want agent %s with command %s.%s, pending", i, hc, agents[i].id, id, agents[i].id)
		}
	}

	watchCtx, stopWatch := context.WithCancel(cc.ctx)
	defer stopWatch()
	watch, err := cc.fc.WatchCommand(watchCtx, &flotillav1.WatchCommandRequest{CommandId: id})
	if err != nil {
		t.Fatal(err)
	}
	first, err := watch.Recv()
	if err != nil || first.GetSnapshot().GetId() != id || first.GetSnapshot().GetState() != fleetRunning {
		t.Fatalf("first watch message = %v, %v; want a snapshot of the running command", first, err)
	}

	for i, a := range agents {
		got := cc.get(id)
		if rel := released(got); !slices.Equal(rel, ids(agents[:i+1])) {
			t.Fatalf("before host %d ran, released hosts = %v, want %v", i, rel, ids(agents[:i+1]))
		}
		cmd := a.nextCommand()
		if cmd.GetId() != id+"."+a.id || !proto.Equal(cmd.GetSpec(), spec) || cmd.GetDeadline() == nil {
			t.Fatalf("%s received %v, want command %s.%s with the restart spec and a deadline", a.id, cmd, id, a.id)
		}
		if !proto.Equal(cmd.GetDeadline(), host(t, got, a.id).GetDeadline()) {
			t.Errorf("sent deadline %v, stored %v", cmd.GetDeadline().AsTime(), host(t, got, a.id).GetDeadline().AsTime())
		}
		a.event(cmd.GetId(), stateAccepted, "journaled", nil)
		a.event(cmd.GetId(), stateRunning, "re-creating web", nil)
		a.heartbeat()
		for _, other := range agents[i+1:] {
			other.expectNothing("the previous host is still running")
		}
		if hc := host(t, cc.get(id), a.id); hc.GetState() != stateRunning || hc.GetStartedAt() == nil || hc.GetMessage() != "re-creating web" {
			t.Fatalf("running host = %v", hc)
		}
		a.event(cmd.GetId(), stateSucceeded, "web re-created", restartResult(a.id))
		a.heartbeat()
	}

	got := cc.get(id)
	if got.GetState() != fleetSucceeded || got.GetFinishedAt() == nil {
		t.Fatalf("fleet command = %v, want SUCCEEDED with a finish time", got)
	}
	wantSummary(t, got, map[string]int32{"succeeded": 3})
	for _, a := range agents {
		hc := host(t, got, a.id)
		if hc.GetState() != stateSucceeded || hc.GetMessage() != "web re-created" || hc.GetStartedAt() == nil || hc.GetFinishedAt() == nil ||
			!proto.Equal(hc.GetResult(), restartResult(a.id)) {
			t.Errorf("host %s = %v", a.id, hc)
		}
		a.expectNothing("every host is done")
	}

	// The watch saw every host's events, then the final snapshot, then the end.
	var msgs []*flotillav1.WatchCommandResponse
	for {
		m, err := watch.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		t.Fatal("the watch ended without events")
	}
	last := msgs[len(msgs)-1].GetSnapshot()
	if last.GetState() != fleetSucceeded || !maps.Equal(last.GetSummary(), map[string]int32{"succeeded": 3}) {
		t.Fatalf("last watch message = %v, want the final snapshot", msgs[len(msgs)-1])
	}
	states := map[string][]flotillav1.CommandState{}
	for _, m := range msgs[:len(msgs)-1] {
		ev := m.GetEvent()
		if ev == nil {
			t.Fatalf("watch message %v before the end is not a host event", m)
		}
		if ev.GetEvent().GetCommandId() != id+"."+ev.GetAgentId() {
			t.Errorf("event %v is for another command", ev)
		}
		if st := ev.GetEvent().GetState(); st != statePending { // releases show as pending events
			states[ev.GetAgentId()] = append(states[ev.GetAgentId()], st)
		}
		if ev.GetEvent().GetState() == stateSucceeded && !proto.Equal(ev.GetEvent().GetResult(), restartResult(ev.GetAgentId())) {
			t.Errorf("SUCCEEDED event without the result: %v", ev)
		}
	}
	for _, a := range agents {
		if want := []flotillav1.CommandState{stateAccepted, stateRunning, stateSucceeded}; !slices.Equal(states[a.id], want) {
			t.Errorf("watch events of %s = %v, want %v", a.id, states[a.id], want)
		}
	}

	// Watching a finished command gives its final snapshot and ends.
	again, err := cc.fc.WatchCommand(cc.ctx, &flotillav1.WatchCommandRequest{CommandId: id})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := again.Recv(); err != nil || m.GetSnapshot().GetState() != fleetSucceeded {
		t.Fatalf("watch of a finished command = %v, %v", m, err)
	}
	if _, err := again.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("watch of a finished command did not end: %v", err)
	}
}

func TestRunCommandMaxErrors(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	agents := h.scriptedFleet("errs", 3, true)
	fc := cc.run(&flotillav1.RunCommandRequest{Spec: pullSpec(), Selector: "fleet=errs", MaxConcurrency: count(1), MaxErrors: count(1)})
	cmd := agents[0].nextCommand()
	agents[0].event(cmd.GetId(), stateFailed, "pull access denied", nil)
	agents[0].heartbeat()

	got := cc.get(fc.GetId())
	if got.GetState() != fleetFailed || got.GetFinishedAt() == nil {
		t.Fatalf("fleet command = %v, want FAILED", got)
	}
	if hc := host(t, got, agents[0].id); hc.GetState() != stateFailed || hc.GetMessage() != "pull access denied" {
		t.Errorf("failed host = %v", hc)
	}
	for _, a := range agents[1:] {
		hc := host(t, got, a.id)
		if hc.GetState() != stateSkipped || !strings.Contains(hc.GetMessage(), "max_errors") || hc.GetDeadline() != nil {
			t.Errorf("host %s = %v, want SKIPPED naming max_errors, never released", a.id, hc)
		}
		a.expectNothing("skipped hosts are never sent their command")
	}
	wantSummary(t, got, map[string]int32{"failed": 1, "skipped": 2})
}

func TestRunCommandMaxConcurrencyPercent(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	agents := h.scriptedFleet("pct", 4, true)
	fc := cc.run(&flotillav1.RunCommandRequest{Spec: pullSpec(), Selector: "fleet=pct", MaxConcurrency: percent(50)})
	if got := inFlight(fc); !slices.Equal(got, ids(agents[:2])) {
		t.Fatalf("in flight after RunCommand = %v, want the first two hosts", got)
	}
	cmds := map[string]string{}
	for _, a := range agents[:2] {
		cmds[a.id] = a.nextCommand().GetId()
	}
	agents[2].expectNothing("50% of 4 hosts is 2")
	agents[3].expectNothing("50% of 4 hosts is 2")

	// One finishes: the third host takes its slot, the fourth still waits.
	agents[0].event(cmds[agents[0].id], stateSucceeded, "pulled", pullResult())
	agents[0].heartbeat()
	cmds[agents[2].id] = agents[2].nextCommand().GetId()
	agents[3].expectNothing("two hosts are still in flight")
	if got := inFlight(cc.get(fc.GetId())); len(got) != 2 {
		t.Fatalf("in flight = %v, want 2 hosts", got)
	}
	for _, a := range agents[1:3] {
		a.event(cmds[a.id], stateSucceeded, "pulled", pullResult())
		a.heartbeat()
	}
	cmd := agents[3].nextCommand()
	agents[3].event(cmd.GetId(), stateSucceeded, "pulled", pullResult())
	agents[3].heartbeat()
	got := cc.get(fc.GetId())
	if got.GetState() != fleetSucceeded {
		t.Fatalf("fleet command = %v, want SUCCEEDED", got)
	}
	wantSummary(t, got, map[string]int32{"succeeded": 4})
}

func TestRunCommandOfflineAgent(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	a := h.scriptedFleet("off", 1, false)[0]

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: backupSpec("shop"), AgentIds: []string{a.id}})
	hc := host(t, fc, a.id)
	until := hc.GetDeadline().AsTime().UTC().Format(time.RFC3339)
	if hc.GetState() != statePending || hc.GetDeadline() == nil || !strings.Contains(hc.GetMessage(), "offline") || !strings.Contains(hc.GetMessage(), until) {
		t.Fatalf("host of an offline agent = %v, want PENDING saying it is offline until %s", hc, until)
	}
	if got := cc.get(fc.GetId()); got.GetState() != fleetRunning || host(t, got, a.id).GetState() != statePending {
		t.Fatalf("fleet command = %v, want it still waiting", got)
	}

	a.connect(h)
	cmd := a.nextCommand()
	if cmd.GetId() != fc.GetId()+"."+a.id || !proto.Equal(cmd.GetSpec(), backupSpec("shop")) {
		t.Fatalf("received %v", cmd)
	}
	a.event(cmd.GetId(), stateRunning, "pg_dump", nil)
	a.event(cmd.GetId(), stateSucceeded, "backed up", &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Backup{Backup: &flotillav1.BackupResult{Database: "shop", SizeBytes: 10}}})
	a.heartbeat()
	got := cc.get(fc.GetId())
	if got.GetState() != fleetSucceeded || host(t, got, a.id).GetMessage() != "backed up" {
		t.Fatalf("fleet command = %v, want SUCCEEDED", got)
	}
}

func TestRunCommandDeadline(t *testing.T) {
	t.Parallel()
	const grace = 100 * time.Millisecond
	h := start(t, servertest.WithConfig(func(c *config.Config) { c.CommandDeadlineGrace = config.Duration(grace) }))
	cc := h.commands()
	agents := h.scriptedFleet("dl", 2, false)
	online, offline := agents[0], agents[1]
	online.connect(h)

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: drainSpec(), AgentIds: []string{online.id, offline.id}, Timeout: durationpb.New(time.Second)})
	cmd := online.nextCommand()
	online.event(cmd.GetId(), stateAccepted, "journaled", nil)
	// The agent never answers: at the deadline plus the grace the control
	// plane tells it to stop and gives up on the command.
	cancel := online.nextCancel()
	if cancel.GetCommandId() != cmd.GetId() || cancel.GetReason() == "" {
		t.Fatalf("cancel = %v, want one for %s with a reason", cancel, cmd.GetId())
	}
	got := cc.waitState(fc.GetId(), fleetFailed)
	wantSummary(t, got, map[string]int32{"timed_out": 2})
	hc := host(t, got, online.id)
	if hc.GetState() != stateTimedOut || hc.GetMessage() != "no result from the agent by the deadline" {
		t.Errorf("online host = %v", hc)
	}
	if end, limit := hc.GetFinishedAt().AsTime(), hc.GetDeadline().AsTime().Add(grace); end.Before(limit) {
		t.Errorf("online host ended at %v, before its deadline plus grace %v", end, limit)
	}
	if hc := host(t, got, offline.id); hc.GetState() != stateTimedOut || !strings.Contains(hc.GetMessage(), "offline") {
		t.Errorf("offline host = %v, want TIMED_OUT saying the agent was offline", hc)
	}

	// A late answer does not change the recorded outcome, nor end the stream.
	online.event(cmd.GetId(), stateSucceeded, "drained late", nil)
	online.heartbeat()
	if hc := host(t, cc.get(fc.GetId()), online.id); hc.GetState() != stateTimedOut {
		t.Errorf("after a late answer the host is %v", hc)
	}
	if open, err := online.streamOpen(); !open {
		t.Errorf("stream ended after a late answer: %v", err)
	}
	// The offline agent comes back after the deadline: nothing is sent.
	offline.connect(h)
	offline.expectNothing("its command timed out while it was offline")
}

func TestCommandResentAfterReconnect(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	a := h.scriptedFleet("resend", 1, true)[0]

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: pullSpec(), AgentIds: []string{a.id}})
	cmd := a.nextCommand()
	a.reconnect(h) // dropped before answering
	again := a.nextCommand()
	if again.GetId() != cmd.GetId() || !proto.Equal(again.GetSpec(), cmd.GetSpec()) || !proto.Equal(again.GetDeadline(), cmd.GetDeadline()) {
		t.Fatalf("after reconnect received %v, want the same command as %v", again, cmd)
	}
	a.event(cmd.GetId(), stateSucceeded, "pulled", pullResult())
	a.heartbeat()
	got := cc.get(fc.GetId())
	if got.GetState() != fleetSucceeded || !proto.Equal(host(t, got, a.id).GetResult(), pullResult()) {
		t.Fatalf("fleet command = %v, want SUCCEEDED with the pull result", got)
	}
	a.reconnect(h)
	a.expectNothing("a finished command is not resent")
}

func TestJournalReportAfterReconnect(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	a := h.scriptedFleet("journal", 1, true)[0]

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: pullSpec(), AgentIds: []string{a.id}})
	cmd := a.nextCommand()
	a.event(cmd.GetId(), stateRunning, "pulling", nil)
	a.heartbeat()
	// The agent finishes while the stream is down, then reports its journal.
	a.reconnect(h)
	if again := a.nextCommand(); again.GetId() != cmd.GetId() {
		t.Fatalf("after reconnect received %v", again)
	}
	done := &flotillav1.CommandEvent{CommandId: cmd.GetId(), State: stateSucceeded, Message: "pulled", At: timestamppb.Now(), Result: pullResult()}
	unknown := &flotillav1.CommandEvent{CommandId: "cmd-forgotten.x", State: stateSucceeded, Message: "old"}
	a.journal(unknown, done)
	a.heartbeat()
	got := cc.get(fc.GetId())
	hc := host(t, got, a.id)
	if got.GetState() != fleetSucceeded || hc.GetState() != stateSucceeded || hc.GetMessage() != "pulled" || !proto.Equal(hc.GetResult(), pullResult()) {
		t.Fatalf("fleet command = %v, want SUCCEEDED with the journaled pull result", got)
	}
	// The same journal again, after another reconnect: nothing changes.
	a.reconnect(h)
	a.journal(done)
	a.heartbeat()
	a.expectNothing("the command is finished")
	if again := host(t, cc.get(fc.GetId()), a.id); !proto.Equal(again, hc) {
		t.Errorf("host changed after a repeated journal: %v, was %v", again, hc)
	}
}

func TestCommandEventFromAnotherAgentIgnored(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	agents := h.scriptedFleet("imp", 2, true)
	owner, intruder := agents[0], agents[1]

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: restartSpec(), AgentIds: []string{owner.id}})
	cmd := owner.nextCommand()
	before := host(t, cc.get(fc.GetId()), owner.id)

	intruder.event(cmd.GetId(), stateFailed, "forged failure", nil)
	intruder.journal(&flotillav1.CommandEvent{CommandId: cmd.GetId(), State: stateSucceeded, Message: "forged success", Result: restartResult(intruder.id)})
	intruder.heartbeat() // both were handled, and the stream still serves
	if open, err := intruder.streamOpen(); !open {
		t.Fatalf("the intruder's stream ended: %v", err)
	}
	got := cc.get(fc.GetId())
	if after := host(t, got, owner.id); got.GetState() != fleetRunning || !proto.Equal(after, before) {
		t.Fatalf("forged events changed the command: %v, was %v", after, before)
	}

	owner.event(cmd.GetId(), stateSucceeded, "restarted", restartResult(owner.id))
	owner.heartbeat()
	finished := host(t, cc.get(fc.GetId()), owner.id)
	if finished.GetState() != stateSucceeded {
		t.Fatalf("owner's host = %v", finished)
	}
	// Also once the command is finished (no longer in memory).
	intruder.event(cmd.GetId(), stateFailed, "forged failure", nil)
	intruder.heartbeat()
	if open, err := intruder.streamOpen(); !open {
		t.Fatalf("the intruder's stream ended: %v", err)
	}
	if after := host(t, cc.get(fc.GetId()), owner.id); !proto.Equal(after, finished) {
		t.Fatalf("a forged event changed a finished command: %v", after)
	}
}

func TestCancelCommand(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	agents := h.scriptedFleet("cancel", 3, true)

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: restartSpec(), Selector: "fleet=cancel", MaxConcurrency: count(1)})
	cmd := agents[0].nextCommand()
	agents[0].event(cmd.GetId(), stateRunning, "stopping web", nil)
	agents[0].heartbeat()

	resp, err := cc.fc.CancelCommand(cc.ctx, &flotillav1.CancelCommandRequest{CommandId: fc.GetId(), Reason: "wrong image"})
	if err != nil {
		t.Fatalf("CancelCommand: %v", err)
	}
	got := resp.GetCommand()
	if got.GetState() != fleetRunning || host(t, got, agents[0].id).GetState() != stateRunning {
		t.Fatalf("after cancel = %v, want the running host to wait for its agent", got)
	}
	for _, a := range agents[1:] {
		if hc := host(t, got, a.id); hc.GetState() != stateSkipped || !strings.Contains(hc.GetMessage(), "cancelled") ||
			!strings.Contains(hc.GetMessage(), "wrong image") {
			t.Errorf("queued host %s = %v, want SKIPPED saying it was cancelled", a.id, hc)
		}
	}
	c := agents[0].nextCancel()
	if c.GetCommandId() != cmd.GetId() || c.GetReason() != "wrong image" {
		t.Fatalf("cancel = %v", c)
	}
	agents[0].event(cmd.GetId(), stateCancelled, "stopped", nil)
	agents[0].heartbeat()
	got = cc.get(fc.GetId())
	if got.GetState() != fleetCancelled || got.GetFinishedAt() == nil || host(t, got, agents[0].id).GetState() != stateCancelled {
		t.Fatalf("fleet command = %v, want CANCELLED", got)
	}
	wantSummary(t, got, map[string]int32{"cancelled": 1, "skipped": 2})
	for _, a := range agents[1:] {
		a.expectNothing("skipped hosts are never sent their command")
	}

	_, err = cc.fc.CancelCommand(cc.ctx, &flotillav1.CancelCommandRequest{CommandId: fc.GetId()})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("cancel of a finished command: %v, want FailedPrecondition", err)
	}
	_, err = cc.fc.CancelCommand(cc.ctx, &flotillav1.CancelCommandRequest{CommandId: "cmd-nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("cancel of an unknown command: %v, want NotFound", err)
	}
}

// The summary view leaves out the per-host entries, running and finished;
// the full view (the default) has them.
func TestCommandSummaryView(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	agents := h.scriptedFleet("view", 3, true)
	resp, err := cc.fc.RunCommand(cc.ctx, &flotillav1.RunCommandRequest{Spec: pullSpec(), Selector: "fleet=view",
		View: flotillav1.CommandView_COMMAND_VIEW_SUMMARY})
	if err != nil {
		t.Fatal(err)
	}
	fc := resp.GetCommand()
	if len(fc.GetHosts()) != 0 || fc.GetState() != fleetRunning {
		t.Fatalf("RunCommand with the summary view = %v, want RUNNING without hosts", fc)
	}
	wantSummary(t, fc, map[string]int32{"pending": 3})
	summaryOf := func() *flotillav1.FleetCommand {
		t.Helper()
		got, err := cc.fc.GetCommand(cc.ctx, &flotillav1.GetCommandRequest{CommandId: fc.GetId(), View: flotillav1.CommandView_COMMAND_VIEW_SUMMARY})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.GetCommand().GetHosts()) != 0 {
			t.Fatalf("GetCommand with the summary view has %d hosts", len(got.GetCommand().GetHosts()))
		}
		return got.GetCommand()
	}
	for _, a := range agents {
		cmd := a.nextCommand()
		a.event(cmd.GetId(), stateSucceeded, "pulled", pullResult())
		a.heartbeat()
	}
	if full := cc.get(fc.GetId()); len(full.GetHosts()) != 3 || full.GetState() != fleetSucceeded {
		t.Fatalf("GetCommand (default view) = %v, want SUCCEEDED with 3 hosts", full)
	}
	done := summaryOf()
	if done.GetState() != fleetSucceeded || done.GetFinishedAt() == nil {
		t.Fatalf("finished command, summary view = %v", done)
	}
	wantSummary(t, done, map[string]int32{"succeeded": 3})
	_, err = cc.fc.GetCommand(cc.ctx, &flotillav1.GetCommandRequest{CommandId: fc.GetId(), View: 9})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "view") {
		t.Fatalf("GetCommand with view 9 = %v, want InvalidArgument naming view", err)
	}
}

func TestRunCommandValidation(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	a := h.scriptedFleet("val", 1, false)[0]
	pull := func(image string) *flotillav1.CommandSpec {
		return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: image}}}
	}
	valid := func(mod func(*flotillav1.RunCommandRequest)) *flotillav1.RunCommandRequest {
		req := &flotillav1.RunCommandRequest{Spec: pullSpec(), AgentIds: []string{a.id}}
		mod(req)
		return req
	}
	tests := []struct {
		name string
		req  *flotillav1.RunCommandRequest
		code codes.Code
		want string
	}{
		{"missing spec", valid(func(r *flotillav1.RunCommandRequest) { r.Spec = nil }), codes.InvalidArgument, "spec"},
		{"upper-case image", valid(func(r *flotillav1.RunCommandRequest) { r.Spec = pull("UPPER/Case:1") }), codes.InvalidArgument, "spec.pull.image"},
		{"image without tag", valid(func(r *flotillav1.RunCommandRequest) { r.Spec = pull("app") }), codes.InvalidArgument, "spec.pull.image"},
		{"image with shell", valid(func(r *flotillav1.RunCommandRequest) { r.Spec = pull("a;rm -rf /") }), codes.InvalidArgument, "spec.pull.image"},
		{"container with shell", valid(func(r *flotillav1.RunCommandRequest) {
			r.Spec = &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{Restart: &flotillav1.RestartCommand{Container: "web;reboot"}}}
		}), codes.InvalidArgument, "spec.restart.container"},
		{"database with shell", valid(func(r *flotillav1.RunCommandRequest) { r.Spec = backupSpec("$(id)") }), codes.InvalidArgument, "spec.backup.database"},
		{"drain server with nginx syntax", valid(func(r *flotillav1.RunCommandRequest) {
			r.Spec = &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drain{Drain: &flotillav1.DrainCommand{Upstream: "shop", Server: "10.0.0.1:80; include x"}}}
		}), codes.InvalidArgument, "spec.drain.server"},
		{"max_concurrency count 0", valid(func(r *flotillav1.RunCommandRequest) { r.MaxConcurrency = count(0) }), codes.InvalidArgument, "max_concurrency.count"},
		{"max_concurrency percent 101", valid(func(r *flotillav1.RunCommandRequest) { r.MaxConcurrency = percent(101) }), codes.InvalidArgument, "max_concurrency.percent"},
		{"max_errors count -1", valid(func(r *flotillav1.RunCommandRequest) { r.MaxErrors = count(-1) }), codes.InvalidArgument, "max_errors.count"},
		{"timeout 48h", valid(func(r *flotillav1.RunCommandRequest) { r.Timeout = durationpb.New(48 * time.Hour) }), codes.InvalidArgument, "timeout"},
		{"timeout 0", valid(func(r *flotillav1.RunCommandRequest) { r.Timeout = durationpb.New(0) }), codes.InvalidArgument, "timeout"},
		{"selector and agent_ids", valid(func(r *flotillav1.RunCommandRequest) { r.Selector = "fleet=val" }), codes.InvalidArgument, "selector"},
		{"no hosts", valid(func(r *flotillav1.RunCommandRequest) { r.AgentIds = nil }), codes.InvalidArgument, "agent_ids"},
		{"bad selector", valid(func(r *flotillav1.RunCommandRequest) { r.AgentIds, r.Selector = nil, "fleet in val" }), codes.InvalidArgument, "selector"},
		{"unknown agent", valid(func(r *flotillav1.RunCommandRequest) { r.AgentIds = []string{a.id, "ghost-123456"} }), codes.NotFound, "ghost-123456"},
		{"selector matches nothing", valid(func(r *flotillav1.RunCommandRequest) { r.AgentIds, r.Selector = nil, "fleet=none" }), codes.FailedPrecondition, "fleet=none"},
		{"unknown view", valid(func(r *flotillav1.RunCommandRequest) { r.View = 7 }), codes.InvalidArgument, "view"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cc.fc.RunCommand(cc.ctx, tt.req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("err = %v, want %v naming %q", err, tt.code, tt.want)
			}
		})
	}
	// Nothing was stored by the refused requests.
	list, err := cc.fc.ListCommands(cc.ctx, &flotillav1.ListCommandsRequest{})
	if err != nil || len(list.GetCommands()) != 0 {
		t.Fatalf("ListCommands after refusals = %v, %v; want none", list, err)
	}
}

func TestControlPlaneRestartMidCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := start(t, servertest.WithDataDir(dir))
	cc := h.commands()
	agents := h.scriptedFleet("restart", 2, true)

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: restartSpec(), Selector: "fleet=restart", MaxConcurrency: count(1)})
	first := agents[0].nextCommand()
	agents[0].event(first.GetId(), stateSucceeded, "restarted", restartResult(agents[0].id))
	agents[0].heartbeat()
	second := agents[1].nextCommand() // released by the first host's success

	h2 := h.restart()
	cc2 := h2.commands()
	got := cc2.get(fc.GetId())
	if got.GetState() != fleetRunning || host(t, got, agents[0].id).GetState() != stateSucceeded ||
		host(t, got, agents[1].id).GetState() != statePending {
		t.Fatalf("after restart = %v, want host 1 succeeded and host 2 pending", got)
	}

	agents[0].reconnect(h2)
	agents[1].reconnect(h2)
	again := agents[1].nextCommand()
	if again.GetId() != second.GetId() || !proto.Equal(again.GetDeadline(), second.GetDeadline()) {
		t.Fatalf("after restart host 2 received %v, want %v again", again, second)
	}
	agents[0].expectNothing("its command succeeded before the restart")
	agents[1].event(second.GetId(), stateSucceeded, "restarted", restartResult(agents[1].id))
	agents[1].heartbeat()

	got = cc2.get(fc.GetId())
	if got.GetState() != fleetSucceeded || !proto.Equal(host(t, got, agents[0].id).GetResult(), restartResult(agents[0].id)) {
		t.Fatalf("fleet command = %v, want SUCCEEDED with both results", got)
	}
	wantSummary(t, got, map[string]int32{"succeeded": 2})
	for _, a := range agents {
		a.expectNothing("no command is sent after its success")
	}
}

// A control plane stopped while a host runs resumes the queue: the next
// host is released by the new process when the running one finishes.
func TestControlPlaneRestartResumesQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := start(t, servertest.WithDataDir(dir))
	cc := h.commands()
	agents := h.scriptedFleet("resume", 2, true)

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: restartSpec(), Selector: "fleet=resume", MaxConcurrency: count(1)})
	first := agents[0].nextCommand()
	agents[0].event(first.GetId(), stateRunning, "restarting", nil)
	agents[0].heartbeat()

	h2 := h.restart()
	cc2 := h2.commands()
	if got := cc2.get(fc.GetId()); !slices.Equal(released(got), []string{agents[0].id}) || host(t, got, agents[0].id).GetState() != stateRunning {
		t.Fatalf("after restart = %v, want only host 1 released, running", got)
	}
	agents[1].reconnect(h2)
	agents[0].reconnect(h2)
	if again := agents[0].nextCommand(); again.GetId() != first.GetId() {
		t.Fatalf("host 1 received %v after the restart", again)
	}
	agents[1].expectNothing("host 1 still runs")
	agents[0].event(first.GetId(), stateSucceeded, "restarted", restartResult(agents[0].id))
	agents[0].heartbeat()
	second := agents[1].nextCommand()
	if second.GetId() != fc.GetId()+"."+agents[1].id {
		t.Fatalf("host 2 received %v", second)
	}
	agents[1].event(second.GetId(), stateSucceeded, "restarted", restartResult(agents[1].id))
	agents[1].heartbeat()
	if got := cc2.get(fc.GetId()); got.GetState() != fleetSucceeded {
		t.Fatalf("fleet command = %v, want SUCCEEDED", got)
	}
}

func TestListCommands(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	a := h.scriptedFleet("list", 1, false)[0] // offline: its commands stay running

	var created []string
	for range 3 {
		created = append(created, cc.run(&flotillav1.RunCommandRequest{Spec: pullSpec(), AgentIds: []string{a.id}, MaxErrors: percent(10)}).GetId())
	}
	// Cancelling a command its offline agent never received ends it at once.
	resp, err := cc.fc.CancelCommand(cc.ctx, &flotillav1.CancelCommandRequest{CommandId: created[1]})
	if err != nil || resp.GetCommand().GetState() != fleetCancelled {
		t.Fatalf("CancelCommand = %v, %v; want CANCELLED", resp, err)
	}

	list := func(req *flotillav1.ListCommandsRequest) ([]string, string) {
		t.Helper()
		resp, err := cc.fc.ListCommands(cc.ctx, req)
		if err != nil {
			t.Fatalf("ListCommands(%v): %v", req, err)
		}
		var out []string
		for _, c := range resp.GetCommands() {
			if len(c.GetHosts()) != 0 || c.GetSpec() == nil || c.GetMaxErrors().GetPercent() != 10 {
				t.Errorf("listed command = %v, want spec and limits without hosts", c)
			}
			// The summary is there without the hosts: live for a running
			// command, as stored for a finished one.
			wantSum := map[string]int32{"pending": 1}
			if c.GetId() == created[1] {
				wantSum = map[string]int32{"cancelled": 1}
			}
			wantSummary(t, c, wantSum)
			out = append(out, c.GetId())
		}
		return out, resp.GetNextPageToken()
	}
	newestFirst := []string{created[2], created[1], created[0]}
	if got, next := list(&flotillav1.ListCommandsRequest{}); !slices.Equal(got, newestFirst) || next != "" {
		t.Fatalf("all = %v (next %q), want %v", got, next, newestFirst)
	}
	page1, next := list(&flotillav1.ListCommandsRequest{PageSize: 2})
	if !slices.Equal(page1, newestFirst[:2]) || next == "" {
		t.Fatalf("page 1 = %v (next %q)", page1, next)
	}
	page2, next2 := list(&flotillav1.ListCommandsRequest{PageSize: 2, PageToken: next})
	if !slices.Equal(page2, newestFirst[2:]) || next2 != "" {
		t.Fatalf("page 2 = %v (next %q)", page2, next2)
	}
	if got, _ := list(&flotillav1.ListCommandsRequest{States: []flotillav1.FleetCommandState{fleetRunning}}); !slices.Equal(got, []string{created[2], created[0]}) {
		t.Errorf("running = %v", got)
	}
	if got, _ := list(&flotillav1.ListCommandsRequest{States: []flotillav1.FleetCommandState{fleetCancelled, fleetSucceeded}}); !slices.Equal(got, []string{created[1]}) {
		t.Errorf("cancelled or succeeded = %v", got)
	}

	for _, bad := range []struct {
		req   *flotillav1.ListCommandsRequest
		field string
	}{
		{&flotillav1.ListCommandsRequest{PageToken: "!!"}, "page_token"},
		// A token this listing never issued: a bare command ID (the old
		// format, which silently gave an empty page), another listing's
		// token, this listing's token for another filter.
		{&flotillav1.ListCommandsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte(created[1]))}, "page_token: not a token from a previous ListCommands response"},
		{&flotillav1.ListCommandsRequest{PageToken: "c29tZXRoaW5n"}, "page_token: not a token from a previous ListCommands response"},
		{&flotillav1.ListCommandsRequest{PageSize: 2, PageToken: next, States: []flotillav1.FleetCommandState{fleetRunning}}, "page_token: issued for a ListCommands query with another filter"},
		{&flotillav1.ListCommandsRequest{States: make([]flotillav1.FleetCommandState, 17)}, "states: 17 entries, at most 16 allowed"},
		{&flotillav1.ListCommandsRequest{PageSize: -1}, "page_size"},
		{&flotillav1.ListCommandsRequest{States: []flotillav1.FleetCommandState{42}}, "states"},
	} {
		if _, err := cc.fc.ListCommands(cc.ctx, bad.req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), bad.field) {
			t.Errorf("ListCommands(%v) = %v, want InvalidArgument naming %s", bad.req, err, bad.field)
		}
	}
	if _, err := cc.fc.GetCommand(cc.ctx, &flotillav1.GetCommandRequest{CommandId: "cmd-nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetCommand of an unknown command: %v, want NotFound", err)
	}
	if _, err := cc.fc.RunCommand(context.Background(), &flotillav1.RunCommandRequest{Spec: pullSpec(), AgentIds: []string{a.id}}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("RunCommand without a token: %v, want Unauthenticated", err)
	}

	// Viewers read commands; operators also run and cancel them.
	viewer, operator := h.apiToken("viewer"), h.apiToken("operator")
	vctx, octx := h.operatorCtx(viewer), h.operatorCtx(operator)
	if _, err := cc.fc.ListCommands(vctx, &flotillav1.ListCommandsRequest{}); err != nil {
		t.Errorf("viewer ListCommands: %v", err)
	}
	if _, err := cc.fc.GetCommand(vctx, &flotillav1.GetCommandRequest{CommandId: created[0]}); err != nil {
		t.Errorf("viewer GetCommand: %v", err)
	}
	if w, err := cc.fc.WatchCommand(vctx, &flotillav1.WatchCommandRequest{CommandId: created[1]}); err != nil {
		t.Errorf("viewer WatchCommand: %v", err)
	} else if m, err := w.Recv(); err != nil || m.GetSnapshot().GetId() != created[1] {
		t.Errorf("viewer watch = %v, %v", m, err)
	}
	if _, err := cc.fc.RunCommand(vctx, &flotillav1.RunCommandRequest{Spec: pullSpec(), AgentIds: []string{a.id}}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("viewer RunCommand: %v, want PermissionDenied", err)
	}
	if _, err := cc.fc.CancelCommand(vctx, &flotillav1.CancelCommandRequest{CommandId: created[0]}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("viewer CancelCommand: %v, want PermissionDenied", err)
	}
	run, err := cc.fc.RunCommand(octx, &flotillav1.RunCommandRequest{Spec: pullSpec(), AgentIds: []string{a.id}})
	if err != nil || run.GetCommand().GetCreatedBy() != "operator:at-operator" {
		t.Fatalf("operator RunCommand = %v, %v", run, err)
	}
	if _, err := cc.fc.CancelCommand(octx, &flotillav1.CancelCommandRequest{CommandId: run.GetCommand().GetId()}); err != nil {
		t.Errorf("operator CancelCommand: %v", err)
	}
}

func TestCommandMetrics(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	a := h.scriptedFleet("metrics", 1, true)[0]

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: backupSpec("shop"), AgentIds: []string{a.id}})
	cmd := a.nextCommand()
	a.event(cmd.GetId(), stateSucceeded, "backed up", &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Backup{Backup: &flotillav1.BackupResult{
		Database: "shop", Path: "/var/backups/shop.dump", SizeBytes: 123456, Sha256: "ab12", VerifiedEntries: 42,
	}}})
	a.heartbeat()
	if got := cc.get(fc.GetId()); got.GetState() != fleetSucceeded {
		t.Fatalf("fleet command = %v", got)
	}
	metrics := h.scrape()
	for _, want := range []string{
		`flotilla_backup_last_size_bytes{agent="` + a.id + `",database="shop"} 123456`,
		`flotilla_backup_last_success_timestamp_seconds{agent="` + a.id + `",database="shop"} `,
		`flotilla_commands_total{kind="backup",state="succeeded"} 1`,
		`flotilla_commands_in_flight{kind="backup"} 0`,
		`flotilla_fleet_commands_started_total 1`,
		`flotilla_command_duration_seconds_count{kind="backup"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// An event for a host command that is still queued (never sent) is
// ignored: it cannot jump the queue or finish a host that never ran.
func TestEventForQueuedCommandIgnored(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	agents := h.scriptedFleet("queued", 2, true)

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: restartSpec(), Selector: "fleet=queued", MaxConcurrency: count(1)})
	queuedID := fc.GetId() + "." + agents[1].id
	agents[1].event(queuedID, stateSucceeded, "never sent", restartResult(agents[1].id))
	agents[1].heartbeat()
	if open, err := agents[1].streamOpen(); !open {
		t.Fatalf("stream ended: %v", err)
	}
	got := cc.get(fc.GetId())
	if hc := host(t, got, agents[1].id); hc.GetState() != statePending || hc.GetResult() != nil || hc.GetDeadline() != nil {
		t.Fatalf("queued host after an early event = %v, want still queued", hc)
	}

	first := agents[0].nextCommand()
	agents[0].event(first.GetId(), stateSucceeded, "restarted", restartResult(agents[0].id))
	agents[0].heartbeat()
	second := agents[1].nextCommand()
	if second.GetId() != queuedID {
		t.Fatalf("received %v, want %s", second, queuedID)
	}
	agents[1].event(queuedID, stateSucceeded, "restarted", restartResult(agents[1].id))
	agents[1].heartbeat()
	if got := cc.get(fc.GetId()); got.GetState() != fleetSucceeded || host(t, got, agents[1].id).GetMessage() != "restarted" {
		t.Fatalf("fleet command = %v, want SUCCEEDED", got)
	}
}

// An agent that stops answering while its command runs is lost, and the
// command fails: its outcome is unknown.
func TestLostAgentFailsRunningCommand(t *testing.T) {
	t.Parallel()
	h := start(t, lostAfter(time.Second))
	cc := h.commands()
	a := h.scriptedFleet("lost", 1, true)[0]

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: backupSpec("shop"), AgentIds: []string{a.id}})
	cmd := a.nextCommand()
	a.event(cmd.GetId(), stateRunning, "pg_dump", nil)
	a.heartbeat()
	a.drop()
	got := cc.waitState(fc.GetId(), fleetFailed)
	if hc := host(t, got, a.id); hc.GetState() != stateFailed || !strings.Contains(hc.GetMessage(), "stopped answering") {
		t.Fatalf("host of a lost agent = %v, want FAILED saying the agent stopped answering", hc)
	}
}

// CancelCommand promises that running hosts are cancelled on their agents.
// An agent that is disconnected when the operator cancels never hears of
// it: on reconnect the control plane resends the command, not the cancel,
// and the host runs on until it finishes or reaches its deadline.
//
// Known bug, reported; set FLOTILLA_KNOWN_BUGS=1 to run.
func TestCancelReachesAgentThatWasDisconnected(t *testing.T) {
	t.Parallel()
	h := start(t)
	cc := h.commands()
	a := h.scriptedFleet("cancel-off", 1, true)[0]

	fc := cc.run(&flotillav1.RunCommandRequest{Spec: restartSpec(), AgentIds: []string{a.id}})
	cmd := a.nextCommand()
	a.event(cmd.GetId(), stateRunning, "restarting", nil)
	a.heartbeat()
	a.drop()
	eventually(t, waitFor, "the agent to be disconnected", func() bool {
		_, online := h.srv.Registry().SessionFor(a.id)
		return !online
	})
	if _, err := cc.fc.CancelCommand(cc.ctx, &flotillav1.CancelCommandRequest{CommandId: fc.GetId(), Reason: "stop"}); err != nil {
		t.Fatal(err)
	}
	a.connect(h)
	for {
		m := a.next()
		if m.GetCancel().GetCommandId() == cmd.GetId() {
			break
		}
		t.Logf("received %v", m) // a resent command is fine, if the cancel follows
	}
}
