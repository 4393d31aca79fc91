package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// TestCommandsEndToEnd runs every kind of command through the real control
// plane and agent with the real grpcurl, as the README shows, against real
// Docker, PostgreSQL and Nginx, and checks both what the API reports and
// what happened on the host.
func TestCommandsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	env := newCommandsEnv(t)
	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"pull watched from an offline agent", env.testPull},
		{"restart to v2", env.testRestart},
		{"restart to a crashing image rolls back", env.testRestartCrash},
		{"backup", env.testBackup},
		{"drain", env.testDrain},
		{"undrain", env.testUndrain},
		{"guard rails", env.testGuardRails},
		{"get and list", env.testGetAndList},
	}
	for _, s := range steps {
		// Each step builds on the host the previous ones left.
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

// testPull pulls v2 while the agent is offline, so that the watch is in
// place before the agent hears of the command and sees every event.
func (env *commandsEnv) testPull(t *testing.T) {
	ref := env.images["v2"]
	if env.docker.HasImage(t, ref) {
		t.Fatalf("%s is present before the pull", ref)
	}
	env.agent.Signal(syscall.SIGTERM)
	env.agent.Wait(t, 10*time.Second)
	env.waitAgent(t, "AGENT_STATE_DISCONNECTED")

	fc := env.g.RunCommand(t, fmt.Sprintf(`{"agent_ids": [%q], "spec": {"pull": {"image": %q}}, "reason": "pre-pull v2"}`, env.agentID, ref))
	env.commandIDs = append(env.commandIDs, fc.ID)
	if fc.State != "FLEET_COMMAND_STATE_RUNNING" || fc.Host().State != "COMMAND_STATE_PENDING" {
		t.Errorf("RunCommand answered %s with host %s, want RUNNING with the host PENDING", fc.State, fc.Host().State)
	}
	w := env.g.WatchCommand(t, fc.ID, commandTimeout)
	fixture.Eventually(t, 10*time.Second, "the first snapshot", func() error {
		if len(w.CommandMessages()) == 0 {
			return fmt.Errorf("no message yet")
		}
		return nil
	})
	env.agent = env.startAgent("agent-restarted")
	msgs := grpcurl.Messages[grpcurl.CommandWatch](w.Wait(t))
	t.Logf("WatchCommand printed %d messages:\n%s", len(msgs), grpcurl.Abridge(w.Output()))

	events, progress := checkPullStream(t, msgs, ref)
	h := grpcurl.FinalSnapshot(t, msgs).Host()
	if !env.docker.HasImage(t, ref) {
		t.Errorf("%s is not present after the pull", ref)
	}
	accepted, _ := grpcurl.FirstEvent(events, "COMMAND_STATE_ACCEPTED")
	done, _ := grpcurl.FirstEvent(events, "COMMAND_STATE_SUCCEEDED")
	t.Logf("pull of %s: %s from ACCEPTED to SUCCEEDED, %d events (%d progress), image %s, digest %s",
		ref, done.At.Sub(accepted.At).Round(time.Millisecond), len(events), progress, h.Result.Pull.ImageID, h.Result.Pull.RepoDigest)
}

// checkPullStream checks a watch that saw a pull from before the agent
// received it to its end: a snapshot with the host PENDING, the agent's
// ACCEPTED, RUNNING and progress events, and a final snapshot with the
// PullResult. It returns the host events and how many carried progress.
func checkPullStream(t *testing.T, msgs []grpcurl.CommandWatch, ref string) ([]grpcurl.CommandEvent, int) {
	t.Helper()
	if first := msgs[0].Snapshot; first == nil || first.Host().State != "COMMAND_STATE_PENDING" {
		t.Errorf("first message = %s, want a snapshot with the host PENDING", grpcurl.Dump(msgs[0]))
	}
	events := grpcurl.HostEvents(msgs)
	var states []string
	progress := 0
	for _, e := range events {
		states = append(states, e.State)
		if e.Progress != nil {
			progress++
		}
	}
	for _, want := range []string{"COMMAND_STATE_ACCEPTED", "COMMAND_STATE_RUNNING", "COMMAND_STATE_SUCCEEDED"} {
		if !slices.Contains(states, want) {
			t.Errorf("events %v lack %s", states, want)
		}
	}
	if progress == 0 {
		t.Errorf("no progress event among %v", states)
	}
	final := grpcurl.FinalSnapshot(t, msgs)
	h := final.Host()
	if final.State != "FLEET_COMMAND_STATE_SUCCEEDED" || h.State != "COMMAND_STATE_SUCCEEDED" || h.Result.Pull == nil ||
		!strings.HasPrefix(h.Result.Pull.ImageID, "sha256:") || h.Result.Pull.Image != ref {
		t.Fatalf("final snapshot = %s", grpcurl.Dump(final))
	}
	return events, progress
}

// testRestart re-creates the application container with v2.
func (env *commandsEnv) testRestart(t *testing.T) {
	before := env.docker.Inspect(t, env.app.name)
	fc, took := env.runToEnd(t, fmt.Sprintf(`{"agent_ids": [%q], "spec": {"restart": {"container": %q, "image": %q}}, "reason": "release v2"}`,
		env.agentID, env.app.name, env.images["v2"]))
	env.commandIDs = append(env.commandIDs, fc.ID)
	h := fc.Host()
	if fc.State != "FLEET_COMMAND_STATE_SUCCEEDED" || h.State != "COMMAND_STATE_SUCCEEDED" || h.Result.Restart == nil {
		t.Fatalf("restart ended %s: %s", fc.State, grpcurl.Dump(fc))
	}
	r := h.Result.Restart
	if r.PreviousImage != env.images["v1"] || r.Image != env.images["v2"] || r.PreviousContainerID != before.ID || r.ContainerID == before.ID {
		t.Errorf("RestartResult = %+v; want previous image %s (container %s), image %s in a new container", r, env.images["v1"], before.ID, env.images["v2"])
	}
	waitBody(t, env.app.url(), "v2")
	after := env.docker.Inspect(t, env.app.name)
	key, value, _ := strings.Cut(env.app.label, "=")
	switch {
	case after.ID != r.ContainerID:
		t.Errorf("container %s is %s, the result says %s", env.app.name, after.ID, r.ContainerID)
	case !slices.Contains(after.Config.Env, env.app.env):
		t.Errorf("env %v lost %s", after.Config.Env, env.app.env)
	case after.Config.Labels[key] != value || after.Config.Labels[fixture.ManagedLabel] != "true":
		t.Errorf("labels %v lost %s or the managed label", after.Config.Labels, env.app.label)
	case after.Config.Image != env.images["v2"]:
		t.Errorf("image %s, want %s", after.Config.Image, env.images["v2"])
	}
	t.Logf("restart to v2: %s from RunCommand to the final snapshot (host %s); %s now answers v2; message %q",
		took.Round(time.Millisecond), h.FinishedAt.Sub(h.StartedAt).Round(time.Millisecond), env.app.url(), h.Message)
}

// testRestartCrash pulls the crashing image and restarts to it: the new
// container exits, and the agent puts the old one back.
func (env *commandsEnv) testRestartCrash(t *testing.T) {
	ref := env.images[fixture.VersionCrash]
	fc, _ := env.runToEnd(t, fmt.Sprintf(`{"agent_ids": [%q], "spec": {"pull": {"image": %q}}}`, env.agentID, ref))
	env.commandIDs = append(env.commandIDs, fc.ID)
	if fc.State != "FLEET_COMMAND_STATE_SUCCEEDED" {
		t.Fatalf("pull of %s ended %s: %s", ref, fc.State, grpcurl.Dump(fc))
	}
	before := env.docker.Inspect(t, env.app.name)
	fc, took := env.runToEnd(t, fmt.Sprintf(`{"agent_ids": [%q], "spec": {"restart": {"container": %q, "image": %q}}, "reason": "release v3"}`,
		env.agentID, env.app.name, ref))
	env.commandIDs = append(env.commandIDs, fc.ID)
	h := fc.Host()
	if fc.State != "FLEET_COMMAND_STATE_FAILED" || h.State != "COMMAND_STATE_FAILED" || h.Message == "" {
		t.Fatalf("restart to %s ended %s (host %s): %s", ref, fc.State, h.State, grpcurl.Dump(fc))
	}
	t.Logf("restart to the crashing image: FAILED after %s with reason:\n%s", took.Round(time.Millisecond), h.Message)
	waitBody(t, env.app.url(), "v2")
	after := env.docker.Inspect(t, env.app.name)
	if after.ID != before.ID || after.Config.Image != env.images["v2"] || after.State == nil || !after.State.Running {
		t.Errorf("after the failed restart %s is %s running %s (running %v); want the old container %s with v2",
			env.app.name, after.ID, after.Config.Image, after.State != nil && after.State.Running, before.ID)
	}
}

// testBackup backs up the database and restores the archive elsewhere.
func (env *commandsEnv) testBackup(t *testing.T) {
	fc, took := env.runToEnd(t, fmt.Sprintf(`{"agent_ids": [%q], "spec": {"backup": {"database": %q}}, "reason": "before the migration"}`,
		env.agentID, databaseName))
	env.commandIDs = append(env.commandIDs, fc.ID)
	h := fc.Host()
	if fc.State != "FLEET_COMMAND_STATE_SUCCEEDED" || h.Result.Backup == nil {
		t.Fatalf("backup ended %s: %s", fc.State, grpcurl.Dump(fc))
	}
	b := h.Result.Backup
	data, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatalf("the archive the result names: %v", err)
	}
	sum := sha256.Sum256(data)
	if b.SHA256 != hex.EncodeToString(sum[:]) || b.SizeBytes != uint64(len(data)) || b.SizeBytes == 0 || b.Database != databaseName {
		t.Errorf("BackupResult = %+v; the file has %d bytes, sha256 %x", b, len(data), sum)
	}
	if _, err := os.Stat(b.ManifestPath); err != nil {
		t.Errorf("manifest: %v", err)
	}
	list, err := exec.Command(env.pg.Bin("pg_restore"), "--list", b.Path).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "TABLE DATA public orders") {
		t.Fatalf("pg_restore --list %s: %v\n%s", b.Path, err, list)
	}
	env.pg.Exec(t, "postgres", "CREATE DATABASE restored")
	if out, err := exec.Command(env.pg.Bin("pg_restore"), "--no-owner", "--exit-on-error",
		"--dbname="+env.pg.AdminConninfo("restored"), b.Path).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore into a fresh database: %v\n%s", err, out)
	}
	for _, table := range []string{"customers", "orders"} {
		q := "SELECT count(*) FROM " + table
		if want, got := env.pg.QueryInt(t, databaseName, q), env.pg.QueryInt(t, "restored", q); got != want || got == 0 {
			t.Errorf("restored %s has %d rows, the original %d", table, got, want)
		}
	}
	t.Logf("backup of %s: %d bytes, sha256 %s, %d entries, pg_dump %s, server %s, took %s (agent), %s (RunCommand to final snapshot); archive %s",
		databaseName, b.SizeBytes, b.SHA256, b.VerifiedEntries, b.PgDumpVersion, b.ServerVersion, b.Duration, took.Round(time.Millisecond), b.Path)
}

// testDrain drains backend A while requests flow through nginx.
func (env *commandsEnv) testDrain(t *testing.T) {
	url, a, b := env.nginx.URL(upstreamName), env.backendA, env.backendB
	across := fixture.StartLoad(t, url, loadWorkers, 5*time.Second)
	hitsA, hitsB := a.Hits(), b.Hits()
	fixture.Eventually(t, 10*time.Second, "traffic on both backends before the drain", func() error {
		if a.Hits() == hitsA || b.Hits() == hitsB {
			return fmt.Errorf("A served %d, B %d requests", a.Hits()-hitsA, b.Hits()-hitsB)
		}
		return nil
	})
	took := env.drainCommand(t, "drain", `, "reason": "maintenance of A"`)
	during := across.Stop()
	checkLoad(t, "across the drain", during, true)
	if file := env.nginx.ReadUpstreamFile(t, upstreamName); !regexp.MustCompile(`server ` + regexp.QuoteMeta(a.Addr) + `[^;]*\bdown;`).MatchString(file) {
		t.Errorf("upstream file after the drain:\n%s", file)
	}
	after := fixture.StartLoad(t, url, loadWorkers, time.Second).Wait()
	checkLoad(t, "after the drain", after, false)
	t.Logf("drain of A: %s from RunCommand to the final snapshot; load across it: %d requests %v, %d failed; after it: %d requests %v, %d failed",
		took.Round(time.Millisecond), during.Requests, during.ByBody, len(during.Failures), after.Requests, after.ByBody, len(after.Failures))
}

// testUndrain puts backend A back.
func (env *commandsEnv) testUndrain(t *testing.T) {
	took := env.drainCommand(t, "undrain", "")
	back := fixture.StartLoad(t, env.nginx.URL(upstreamName), loadWorkers, time.Second).Wait()
	checkLoad(t, "after the undrain", back, true)
	t.Logf("undrain of A: %s; load after it: %d requests %v, %d failed; backends served A=%d B=%d in all",
		took.Round(time.Millisecond), back.Requests, back.ByBody, len(back.Failures), env.backendA.Hits(), env.backendB.Hits())
}

// loadWorkers is how many clients send requests through nginx at once.
const loadWorkers = 4

// drainCommand runs a drain or undrain of backend A (extra is more JSON
// for the request), checks its DrainResult and waits until nginx's old
// workers are gone, so that every later request sees the new upstream.
func (env *commandsEnv) drainCommand(t *testing.T, kind, extra string) time.Duration {
	t.Helper()
	file, server := env.nginx.UpstreamFile(upstreamName), env.backendA.Addr
	workers := env.nginx.Workers(t)
	fc, took := env.runToEnd(t, fmt.Sprintf(`{"agent_ids": [%q], "spec": {%q: {"upstream": %q, "server": %q}}%s}`,
		env.agentID, kind, upstreamName, server, extra))
	env.commandIDs = append(env.commandIDs, fc.ID)
	d := fc.Host().Result.Drain
	if fc.State != "FLEET_COMMAND_STATE_SUCCEEDED" || d == nil || !d.Changed || d.File != file || d.Server != server || d.Upstream != upstreamName {
		t.Fatalf("%s ended %s: %s", kind, fc.State, grpcurl.Dump(fc))
	}
	env.nginx.WaitReloaded(t, workers)
	return took
}

// checkLoad wants no failed request, answers from B, and answers from A
// exactly when wantA.
func checkLoad(t *testing.T, when string, r fixture.LoadReport, wantA bool) {
	t.Helper()
	if len(r.Failures) > 0 || (r.ByBody["A"] > 0) != wantA || r.ByBody["B"] == 0 || len(r.ByBody) > 2 {
		t.Errorf("load %s: %d requests, answers by backend %v (A wanted: %v), %d failed: %v",
			when, r.Requests, r.ByBody, wantA, len(r.Failures), r.Failures[:min(3, len(r.Failures))])
	}
}

// testGuardRails checks what the agent and the control plane refuse.
func (env *commandsEnv) testGuardRails(t *testing.T) {
	t.Run("registry not allowed", func(t *testing.T) {
		fc, _ := env.runToEnd(t, fmt.Sprintf(`{"agent_ids": [%q], "spec": {"pull": {"image": "docker.io/library/nginx:1.27"}}}`, env.agentID))
		env.commandIDs = append(env.commandIDs, fc.ID)
		h := fc.Host()
		if fc.State != "FLEET_COMMAND_STATE_FAILED" || h.State != "COMMAND_STATE_REJECTED" || !strings.Contains(h.Message, "docker.allowed_registries") {
			t.Errorf("pull from docker.io: %s", grpcurl.Dump(fc))
		}
		t.Logf("REJECTED: %s", h.Message)
	})
	t.Run("container not managed", func(t *testing.T) {
		fc, _ := env.runToEnd(t, fmt.Sprintf(`{"agent_ids": [%q], "spec": {"restart": {"container": %q, "image": %q}}}`,
			env.agentID, env.unmanaged, env.images["v2"]))
		env.commandIDs = append(env.commandIDs, fc.ID)
		h := fc.Host()
		if h.State != "COMMAND_STATE_REJECTED" || !strings.Contains(h.Message, "not managed") {
			t.Errorf("restart of %s: %s", env.unmanaged, grpcurl.Dump(fc))
		}
		if c := env.docker.Inspect(t, env.unmanaged); c.Config.Image != env.images["v1"] {
			t.Errorf("the unmanaged container now runs %s", c.Config.Image)
		}
		t.Logf("REJECTED: %s", h.Message)
	})
	t.Run("malformed image", func(t *testing.T) {
		bad := strings.Replace(env.images["v2"], "flotilla-test/app", "Flotilla-Test/App", 1)
		out, err := env.g.Invoke(t, grpcurl.FleetService+"RunCommand", fmt.Sprintf(`{"agent_ids": [%q], "spec": {"pull": {"image": %q}}}`, env.agentID, bad))
		if err == nil || !strings.Contains(out, "InvalidArgument") || !strings.Contains(out, "spec.pull.image") {
			t.Errorf("RunCommand with image %s: err %v, output:\n%s", bad, err, out)
		}
		t.Logf("grpcurl failed as it should:\n%s", strings.TrimSpace(out))
	})
}

// testGetAndList reads the commands back.
func (env *commandsEnv) testGetAndList(t *testing.T) {
	pull := env.g.GetCommand(t, env.commandIDs[0])
	h := pull.Host()
	if pull.State != "FLEET_COMMAND_STATE_SUCCEEDED" || h.Result.Pull == nil || h.Result.Pull.Image != env.images["v2"] ||
		pull.Reason != "pre-pull v2" || pull.CreatedBy == "" || h.AgentID != env.agentID {
		t.Errorf("GetCommand %s: %s", env.commandIDs[0], grpcurl.Dump(pull))
	}
	t.Logf("GetCommand: %s by %s, host %s %s", pull.State, pull.CreatedBy, h.AgentID, h.State)

	var list grpcurl.ListCommandsResponse
	env.g.RPC(t, grpcurl.FleetService+"ListCommands", `{"page_size": 50}`, &list)
	var got []string
	for i, c := range list.Commands {
		got = append(got, c.ID)
		if i > 0 && c.CreatedAt.After(list.Commands[i-1].CreatedAt) {
			t.Errorf("ListCommands is not newest first at %d", i)
		}
	}
	want := slices.Clone(env.commandIDs)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Errorf("ListCommands = %v, want %v", got, want)
	}

	var failed grpcurl.ListCommandsResponse
	env.g.RPC(t, grpcurl.FleetService+"ListCommands", `{"states": ["FLEET_COMMAND_STATE_FAILED"], "page_size": 10}`, &failed)
	for _, c := range failed.Commands {
		if c.State != "FLEET_COMMAND_STATE_FAILED" {
			t.Errorf("ListCommands states=FAILED answered %s in %s", c.ID, c.State)
		}
	}
	// The crashing restart and the two rejections.
	if len(failed.Commands) != 3 {
		t.Errorf("ListCommands states=FAILED answered %d commands, want 3: %s", len(failed.Commands), grpcurl.Dump(failed))
	}
	t.Logf("ListCommands: %d commands, %d failed; newest: %s %s", len(list.Commands), len(failed.Commands),
		list.Commands[0].ID, list.Commands[0].State)
}
