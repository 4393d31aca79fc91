package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"flotilla.dev/cli/internal/exitcode"
)

// serviceYAML is a service on the simulated fleet's hosts: one host per
// batch, a short health gate, and autoRollback as given.
func serviceYAML(name string, autoRollback bool, deadline string) string {
	return fmt.Sprintf(`name: %s
container: web
selector: role=web
health_url: http://127.0.0.1:8080/health
default_strategy:
  batch_size: 1
  min_healthy_time: 1s
  healthy_deadline: %s
  max_failures: {count: 1}
  auto_rollback: %t
`, name, deadline, autoRollback)
}

// rolloutID finds the rollout's ID in the command's output.
var rolloutIDPattern = regexp.MustCompile(`rollout (\S+):`)

func rolloutID(t *testing.T, out string) string {
	t.Helper()
	m := rolloutIDPattern.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no rollout ID in %q", out)
	}
	return m[1]
}

// TestAgainstControlPlane drives a real control plane and a simulated fleet
// of two hosts through the command, checking each exit code against the
// server's final state.
func TestAgainstControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the control plane and simulated agents; run without -short")
	}
	p := startPlane(t)
	p.startFleet(2)
	t.Run("invalid input names the field", func(t *testing.T) { invalidInput(t, p) })
	t.Run("credentials and transport", func(t *testing.T) { credentialsAndTransport(t, p) })
	t.Run("named contexts", func(t *testing.T) { contexts(t, p) })
	t.Run("an operator certificate", func(t *testing.T) { operatorCert(t, p) })
	t.Run("service apply shows the diff", func(t *testing.T) { applyService(t, p) })
	t.Run("deploy --watch succeeds with 0", func(t *testing.T) { deploySucceeds(t, p) })
	t.Run("the live view in a terminal", func(t *testing.T) { liveViewInTerminal(t, p) })
	t.Run("-o json is one message per line", func(t *testing.T) { jsonLines(t, p) })
	t.Run("a dropped stream is re-attached", func(t *testing.T) { streamDrop(t, p) })
	t.Run("an interrupted watch is 7 and the rollout goes on", func(t *testing.T) { interrupted(t, p) })
	t.Run("rolled back is 11", func(t *testing.T) { rolledBack(t, p) })
	t.Run("blocked, timeout and aborted", func(t *testing.T) { blockedTimeoutAborted(t, p) })
	t.Run("failed is 10", func(t *testing.T) { failed(t, p) })
	t.Run("cmd run --watch", func(t *testing.T) { fleetCommand(t, p) })
	t.Run("backup policies and the catalog", func(t *testing.T) { backupPolicies(t, p) })
	t.Run("a strategy override from flags", func(t *testing.T) { strategyOverride(t, p) })
	t.Run("notification subscriptions", func(t *testing.T) { notifySubscriptions(t, p) })
	t.Run("deploy windows and --override-window", func(t *testing.T) { deployWindows(t, p) })
	t.Run("service remediations", func(t *testing.T) { remediations(t, p) })
}

// deployWindows: a service whose only window is New Year's first minute in
// Kolkata (its duration in Go's notation inside the list): the dry run
// shows the windows closed, a start is blocked (5) with the next window's
// start, --override-window needs --reason, and with one the rollout runs.
func deployWindows(t *testing.T, p *plane) {
	file := p.writeFile("patchday.yaml", strings.Replace(serviceYAML("patchday", false, "10s"), "default_strategy:",
		"allowed_windows:\n  - {start: \"0 0 1 1 *\", duration: 1m, time_zone: Asia/Kolkata}\ndefault_strategy:", 1))
	if r := p.run("service", "apply", "-f", file); r.code != 0 {
		t.Fatalf("apply a service with a window: exit %d %s", r.code, r.stderr)
	}
	r := p.run("rollout", "start", "patchday", "--image", "registry.sim/app:v9", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "deploy windows closed") || !strings.Contains(r.stdout, "-01-01T00:00:00+05:30") {
		t.Fatalf("dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = p.run("rollout", "start", "patchday", "--image", "registry.sim/app:v9")
	if r.code != int(exitcode.Blocked) || !strings.Contains(r.stderr, "the next window opens at") || !strings.Contains(r.stderr, "+05:30") {
		t.Fatalf("start outside the window: exit %d, stderr %q; want %d with the next window's start", r.code, r.stderr, exitcode.Blocked)
	}
	r = p.run("rollout", "start", "patchday", "--image", "registry.sim/app:v9", "--override-window")
	if r.code != int(exitcode.Invalid) || !strings.Contains(r.stderr, "--reason") {
		t.Fatalf("--override-window without --reason: exit %d, stderr %q", r.code, r.stderr)
	}
	r = p.run("rollout", "start", "patchday", "--image", "registry.sim/app:v9", "--override-window", "--reason", "hotfix", "--watch")
	if r.code != 0 || !strings.Contains(r.stdout, "overridden") {
		t.Fatalf("--override-window --reason: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func invalidInput(t *testing.T, p *plane) {
	bad := p.writeFile("bad.yaml", strings.Replace(serviceYAML("web", true, "10s"), "selector: role=web", "selector: role=;web", 1))
	r := p.run("service", "apply", "-f", bad)
	if r.code != int(exitcode.Invalid) || !strings.Contains(r.stderr, "selector") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("apply of a bad selector: exit %d, stderr %q; want %d and one line naming selector", r.code, r.stderr, exitcode.Invalid)
	}
	r = p.run("rollout", "start", "web", "--image", "no tag here")
	if r.code != int(exitcode.Invalid) || !strings.Contains(r.stderr, "InvalidArgument") {
		t.Errorf("start with a bad image: exit %d, stderr %q", r.code, r.stderr)
	}
	r = p.run("rollout", "start", "web")
	if r.code != int(exitcode.Invalid) || !strings.Contains(r.stderr, "--image") {
		t.Errorf("start without an image: exit %d, stderr %q", r.code, r.stderr)
	}
	r = p.run("rollout", "watch", "ro-does-not-exist")
	if r.code != int(exitcode.Invalid) || !strings.Contains(r.stderr, "NotFound") {
		t.Errorf("watch of an unknown rollout: exit %d, stderr %q", r.code, r.stderr)
	}
}

func credentialsAndTransport(t *testing.T, p *plane) {
	r := p.runEnv(map[string]string{"FLOTILLA_TOKEN": "fat_wrong"}, "agents", "ls")
	if r.code != int(exitcode.Denied) || !strings.Contains(r.stderr, "Unauthenticated") {
		t.Errorf("a wrong token: exit %d, stderr %q", r.code, r.stderr)
	}
	r = p.runEnv(map[string]string{"FLOTILLA_ADDRESS": freeAddr(t)}, "agents", "ls")
	if r.code != int(exitcode.Transport) {
		t.Errorf("nothing listening: exit %d, stderr %q; want %d", r.code, r.stderr, exitcode.Transport)
	}
}

func applyService(t *testing.T, p *plane) {
	file := p.writeFile("web.yaml", serviceYAML("web", true, "10s"))
	r := p.run("service", "apply", "-f", file, "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "+ name: web") || !strings.Contains(r.stdout, "nothing stored") {
		t.Fatalf("dry run: exit %d\n%s", r.code, r.stdout)
	}
	if r := p.run("service", "get", "web"); r.code != int(exitcode.Invalid) {
		t.Fatalf("the dry run stored the service: exit %d", r.code)
	}
	if r := p.run("service", "apply", "-f", file); r.code != 0 {
		t.Fatalf("apply: exit %d", r.code)
	}
	changed := p.writeFile("web2.yaml", strings.Replace(serviceYAML("web", true, "10s"), "min_healthy_time: 1s", "min_healthy_time: 2s", 1))
	r = p.run("service", "apply", "-f", changed)
	if r.code != 0 || !strings.Contains(r.stdout, "- ") || !strings.Contains(r.stdout, "+ ") || !strings.Contains(r.stdout, "min_healthy_time: 2s") {
		t.Errorf("the change's diff: exit %d\n%s", r.code, r.stdout)
	}
	if r := p.run("service", "apply", "-f", file); r.code != 0 {
		t.Fatalf("apply back: exit %d", r.code)
	}
}

func deploySucceeds(t *testing.T, p *plane) {
	r := p.run("rollout", "start", "web", "--image", "registry.sim/app:v2", "--watch", "--reason", "cli test")
	if r.code != 0 || !strings.Contains(r.stdout, "SUCCEEDED") {
		t.Fatalf("deploy --watch: exit %d", r.code)
	}
	id := rolloutID(t, r.stdout)
	// Watching a rollout that is over returns at once with its code.
	w := p.run("rollout", "watch", id, "--timeout", "5m")
	if w.code != 0 || !strings.Contains(w.stdout, "rollout "+id+" SUCCEEDED") {
		t.Errorf("watch of a finished rollout: exit %d", w.code)
	}
	if h := p.run("service", "history", "web"); h.code != 0 || !strings.Contains(h.stdout, id) {
		t.Errorf("history: exit %d", h.code)
	}
}

// jsonMessage is a line of -o json output.
type jsonMessage struct {
	Rollout *struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"rollout"`
	Event *struct {
		Sequence string `json:"sequence"`
	} `json:"event"`
}

// checkJSONLines checks that every line of out is a JSON message: the
// started rollout, events with sequences 1, 2, ... without gap or repeat,
// then the final rollout in state want.
func checkJSONLines(t *testing.T, out, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 {
		t.Fatalf("%d lines of JSON", len(lines))
	}
	var next int64 = 1
	for i, l := range lines {
		var m jsonMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v: %q", i+1, err, l)
		}
		switch {
		case i == 0 || i == len(lines)-1:
			if m.Rollout == nil || m.Rollout.ID == "" {
				t.Fatalf("line %d is not a rollout: %q", i+1, l)
			}
		case m.Event == nil:
			t.Fatalf("line %d is not an event: %q", i+1, l)
		default:
			seq, _ := strconv.ParseInt(m.Event.Sequence, 10, 64)
			if seq != next {
				t.Fatalf("line %d: event %d, want %d (none repeated or missing)", i+1, seq, next)
			}
			next++
		}
	}
	var last jsonMessage
	_ = json.Unmarshal([]byte(lines[len(lines)-1]), &last)
	if last.Rollout.State != want {
		t.Errorf("final state %s, want %s", last.Rollout.State, want)
	}
}

func jsonLines(t *testing.T, p *plane) {
	r := p.run("rollout", "start", "web", "--image", "registry.sim/app:v3", "--watch", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	checkJSONLines(t, r.stdout, "ROLLOUT_STATE_SUCCEEDED")
	if !strings.Contains(r.stderr, "SUCCEEDED") {
		t.Errorf("no progress on stderr: %q", r.stderr)
	}
}

func streamDrop(t *testing.T, p *plane) {
	px := startProxy(t, p.addr)
	var out, errOut lockedBuffer
	done := make(chan result, 1)
	go func() {
		done <- p.runWith(context.Background(), map[string]string{"FLOTILLA_ADDRESS": px.addr()}, &out, &errOut,
			"rollout", "start", "web", "--image", "registry.sim/app:v4", "--watch", "-o", "json")
	}()
	// Cut every connection once the first event went through.
	eventually(t, "the first event", func() error {
		if strings.Contains(out.String(), `"event"`) {
			return nil
		}
		return fmt.Errorf("stdout %q", out.String())
	})
	px.cut()
	var r result
	select {
	case r = <-done:
	case <-time.After(waitFor):
		t.Fatal("the command did not end")
	}
	if r.code != 0 {
		t.Fatalf("exit %d after the drop, want 0: the rollout succeeded", r.code)
	}
	if !strings.Contains(r.stderr, "re-attaching") {
		t.Errorf("stderr does not say the stream was re-attached: %q", r.stderr)
	}
	checkJSONLines(t, r.stdout, "ROLLOUT_STATE_SUCCEEDED")
}

func rolledBack(t *testing.T, p *plane) {
	r := p.run("rollout", "start", "web", "--image", "registry.sim/app:broken-1", "--watch")
	if r.code != int(exitcode.RolledBack) {
		t.Fatalf("exit %d, want %d", r.code, exitcode.RolledBack)
	}
	if !strings.Contains(r.stdout, "failed gate: health gate on host") || !strings.Contains(r.stdout, "ROLLED_BACK") {
		t.Errorf("no failed gate with its evidence:\n%s", r.stdout)
	}
}

func blockedTimeoutAborted(t *testing.T, p *plane) {
	// A gate long enough to find the rollout active; the abort waits for
	// the host in its gate to fail it (hosts in progress finish).
	slow := p.writeFile("slow.yaml", serviceYAML("web", true, "20s"))
	if r := p.run("service", "apply", "-f", slow); r.code != 0 {
		t.Fatalf("apply: exit %d", r.code)
	}
	defer func() {
		if r := p.run("service", "apply", "-f", p.writeFile("web.yaml", serviceYAML("web", true, "10s"))); r.code != 0 {
			t.Errorf("apply back: exit %d", r.code)
		}
	}()
	r := p.run("rollout", "start", "web", "--image", "registry.sim/app:broken-2")
	if r.code != 0 {
		t.Fatalf("start: exit %d", r.code)
	}
	id := rolloutID(t, r.stdout)
	b := p.run("rollout", "start", "web", "--image", "registry.sim/app:v5")
	if b.code != int(exitcode.Blocked) || !strings.Contains(b.stderr, id) {
		t.Errorf("a second rollout: exit %d, stderr %q; want %d naming %s", b.code, b.stderr, exitcode.Blocked, id)
	}
	w := p.run("rollout", "watch", id, "--timeout", "1s")
	if w.code != int(exitcode.Timeout) || !strings.Contains(w.stderr, "flotilla rollout watch "+id) {
		t.Errorf("--timeout: exit %d, stderr %q; want %d and the ID", w.code, w.stderr, exitcode.Timeout)
	}
	if a := p.run("rollout", "abort", id, "--reason", "cli test", "--watch"); a.code != int(exitcode.Cancelled) {
		t.Errorf("abort --watch: exit %d, want %d", a.code, exitcode.Cancelled)
	}
}

func failed(t *testing.T, p *plane) {
	file := p.writeFile("norb.yaml", serviceYAML("web-norb", false, "5s"))
	if r := p.run("service", "apply", "-f", file); r.code != 0 {
		t.Fatalf("apply: exit %d", r.code)
	}
	r := p.run("rollout", "start", "web-norb", "--image", "registry.sim/app:broken-3", "--watch")
	if r.code != int(exitcode.Failed) || !strings.Contains(r.stdout, "failed gate: health gate") {
		t.Errorf("exit %d, want %d with the failed gate", r.code, exitcode.Failed)
	}
}

func fleetCommand(t *testing.T, p *plane) {
	r := p.run("cmd", "run", "pull", "registry.sim/app:v6", "-l", "role=web", "--max-concurrency", "1", "--watch")
	if r.code != 0 || !strings.Contains(r.stdout, "SUCCEEDED") {
		t.Errorf("pull --watch: exit %d", r.code)
	}
	r = p.run("cmd", "run", "restart", "not-managed", "-l", "role=web", "--watch")
	if r.code != int(exitcode.Failed) || !strings.Contains(r.stdout, "rejected") {
		t.Errorf("a restart the agents refuse: exit %d, want %d", r.code, exitcode.Failed)
	}
}

// interrupted stops a watch as Ctrl-C does (the command's context ends):
// exit 7, the ID printed to re-attach, and the rollout goes on to succeed.
func interrupted(t *testing.T, p *plane) {
	var out, errOut lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result, 1)
	go func() {
		done <- p.runWith(ctx, nil, &out, &errOut, "rollout", "start", "web", "--image", "registry.sim/app:v4-int", "--watch")
	}()
	eventually(t, "the first event", func() error {
		if strings.Contains(out.String(), " host ") {
			return nil
		}
		return fmt.Errorf("stdout %q", out.String())
	})
	cancel()
	r := <-done
	id := rolloutID(t, r.stdout)
	if r.code != int(exitcode.Interrupted) || !strings.Contains(r.stderr, "flotilla rollout watch "+id) {
		t.Fatalf("exit %d, stderr %q; want %d and the ID to re-attach", r.code, r.stderr, exitcode.Interrupted)
	}
	if w := p.run("rollout", "watch", id); w.code != 0 {
		t.Errorf("re-attached: exit %d, want 0", w.code)
	}
}

// contexts saves the control plane as a named context, switches to it and
// lists agents with no FLOTILLA_* variable but the config file's path.
func contexts(t *testing.T, p *plane) {
	tokenFile := p.writeFile("admin.token", p.env["FLOTILLA_TOKEN"])
	none := map[string]string{"FLOTILLA_ADDRESS": "", "FLOTILLA_TOKEN": "", "FLOTILLA_CA": ""}
	if r := p.runEnv(none, "context", "set", "it", "--address", p.addr, "--ca", p.env["FLOTILLA_CA"], "--token-file", tokenFile); r.code != 0 {
		t.Fatalf("context set: exit %d", r.code)
	}
	if r := p.runEnv(none, "context", "set", "elsewhere", "--address", freeAddr(t)); r.code != 0 {
		t.Fatalf("context set: exit %d", r.code)
	}
	if r := p.runEnv(none, "context", "use", "elsewhere"); r.code != 0 {
		t.Fatalf("context use: exit %d", r.code)
	}
	if r := p.runEnv(none, "agents", "ls"); r.code != int(exitcode.Transport) {
		t.Errorf("agents ls on a context where nothing listens: exit %d, want %d", r.code, exitcode.Transport)
	}
	if r := p.runEnv(none, "context", "use", "it"); r.code != 0 {
		t.Fatalf("context use: exit %d", r.code)
	}
	if r := p.runEnv(none, "agents", "ls"); r.code != 0 || !strings.Contains(r.stdout, "connected") {
		t.Errorf("agents ls through the context: exit %d", r.code)
	}
	if r := p.runEnv(none, "context", "ls"); !strings.Contains(r.stdout, "* it") {
		t.Errorf("context ls does not mark it current:\n%s", r.stdout)
	}
	if r := p.runEnv(none, "context", "use", "nope"); r.code != int(exitcode.Invalid) || !strings.Contains(r.stderr, "elsewhere, it") {
		t.Errorf("context use of an unknown context: exit %d, stderr %q", r.code, r.stderr)
	}
}

// operatorCert issues an operator certificate with the command and
// authenticates with it instead of a token.
func operatorCert(t *testing.T, p *plane) {
	dir := t.TempDir()
	if r := p.run("tokens", "cert", "alice", "--role", "viewer", "--dir", dir); r.code != 0 {
		t.Fatalf("tokens cert: exit %d", r.code)
	}
	key, crt := filepath.Join(dir, "alice.key"), filepath.Join(dir, "alice.crt")
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the key: %v, %v; want mode 0600", st, err)
	}
	noToken := map[string]string{"FLOTILLA_TOKEN": ""}
	if r := p.runEnv(noToken, "agents", "ls", "--cert", crt, "--key", key); r.code != 0 {
		t.Errorf("agents ls with the certificate: exit %d", r.code)
	}
	// The role it carries: a viewer may not start a rollout.
	r := p.runEnv(noToken, "rollout", "start", "web", "--image", "registry.sim/app:v9", "--cert", crt, "--key", key)
	if r.code != int(exitcode.Denied) || !strings.Contains(r.stderr, "PermissionDenied") {
		t.Errorf("a viewer's rollout: exit %d, stderr %q; want %d", r.code, r.stderr, exitcode.Denied)
	}
}

// backupPolicies creates a backup policy from flags, finds it in the list
// and by name, changes it, previews its retention, reads the catalog as
// JSON, and deletes the policy.
func backupPolicies(t *testing.T, p *plane) {
	r := p.run("backup", "policy", "create", "nightly", "-l", "role=web", "--database", "app",
		"--schedule", "15 3 * * *", "--time-zone", "Europe/Paris", "--keep-last", "5", "--keep-daily", "7")
	if r.code != 0 || !strings.Contains(r.stdout, "backup policy nightly created") || !strings.Contains(r.stdout, "15 3 * * * Europe/Paris") {
		t.Fatalf("create: exit %d\n%s", r.code, r.stdout)
	}
	if r := p.run("backup", "policy", "create", "nightly", "-l", "role=web", "--database", "app"); r.code == 0 {
		t.Errorf("a second policy of the same name: exit 0")
	}
	r = p.run("backup", "policy", "ls")
	if r.code != 0 || !regexp.MustCompile(`(?m)^nightly\s+role=web\s+app\s`).MatchString(r.stdout) {
		t.Errorf("ls: exit %d\n%s", r.code, r.stdout)
	}
	if r := p.run("backup", "policy", "update", "nightly", "--keep-last", "9", "--paused"); r.code != 0 {
		t.Errorf("update: exit %d", r.code)
	}
	r = p.run("backup", "policy", "get", "nightly", "-o", "json")
	var got struct {
		Policy struct {
			Name      string `json:"name"`
			Schedule  string `json:"schedule"`
			Paused    bool   `json:"paused"`
			Retention struct {
				KeepLast  int `json:"keepLast"`
				KeepDaily int `json:"keepDaily"`
			} `json:"retention"`
		} `json:"policy"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("get -o json: exit %d, %v: %q", r.code, err, r.stdout)
	}
	if pol := got.Policy; pol.Name != "nightly" || pol.Schedule != "15 3 * * *" || !pol.Paused || pol.Retention.KeepLast != 9 || pol.Retention.KeepDaily != 7 {
		t.Errorf("the policy after the update: %+v; want schedule kept, keep_last 9, keep_daily 7, paused", pol)
	}
	if r := p.run("backup", "retention-preview", "nightly", "--keep-last", "1"); r.code != 0 || !strings.Contains(r.stdout, "recoverable:") {
		t.Errorf("retention-preview: exit %d\n%s", r.code, r.stdout)
	}
	r = p.run("backup", "ls", "--policy", "nightly", "--verified", "-o", "json")
	var page struct {
		Backups []struct {
			ID string `json:"id"`
		} `json:"backups"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &page); err != nil || r.code != 0 {
		t.Errorf("backup ls -o json: exit %d, %v: %q", r.code, err, r.stdout)
	}
	if r := p.run("backup", "get", "no-such-backup"); r.code != int(exitcode.Invalid) || !strings.Contains(r.stderr, "NotFound") {
		t.Errorf("get of an unknown backup: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := p.run("backup", "policy", "delete", "nightly"); r.code != 0 {
		t.Errorf("delete: exit %d", r.code)
	}
	if r := p.run("backup", "policy", "get", "nightly"); r.code != int(exitcode.Invalid) {
		t.Errorf("get after delete: exit %d", r.code)
	}
}

// strategyOverride starts a rollout with strategy flags: the plan shows
// them, and the started rollout's strategy is the service's default (one
// host per batch, min healthy 1s) with the flags applied on top.
func strategyOverride(t *testing.T, p *plane) {
	args := []string{"rollout", "start", "web", "--image", "registry.sim/app:v7", "--batch-size", "2", "--max-failures", "50%"}
	r := p.run(append(args, "--dry-run")...)
	if r.code != 0 || !strings.Contains(r.stdout, "2 hosts in 1 batches") || !strings.Contains(r.stdout, "batches of 2 hosts") ||
		!strings.Contains(r.stdout, "max failures 50%") {
		t.Fatalf("dry run: exit %d\n%s", r.code, r.stdout)
	}
	r = p.run(append(args, "--watch")...)
	if r.code != 0 {
		t.Fatalf("start --watch: exit %d", r.code)
	}
	id := rolloutID(t, r.stdout)
	r = p.run("rollout", "get", id, "-o", "json")
	var got struct {
		Rollout struct {
			Strategy struct {
				BatchSize      int    `json:"batchSize"`
				MinHealthyTime string `json:"minHealthyTime"`
				AutoRollback   bool   `json:"autoRollback"`
				MaxFailures    struct {
					Percent int `json:"percent"`
				} `json:"maxFailures"`
			} `json:"strategy"`
			Batches []json.RawMessage `json:"batches"`
		} `json:"rollout"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("get -o json: exit %d, %v: %q", r.code, err, r.stdout)
	}
	s := got.Rollout.Strategy
	if s.BatchSize != 2 || s.MaxFailures.Percent != 50 || s.MinHealthyTime != "1s" || !s.AutoRollback || len(got.Rollout.Batches) != 1 {
		t.Errorf("the rollout's strategy %+v and %d batches; want batch size 2, max failures 50%%, the default's min healthy 1s and auto rollback, 1 batch",
			s, len(got.Rollout.Batches))
	}
}

// notifySubscriptions subscribes a webhook, sends it a test event and
// reads the delivery back, pauses the subscription, and deletes it.
func notifySubscriptions(t *testing.T, p *plane) {
	var received atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	r := p.run("notify", "sub", "create", "ops", "--events", "rollout.failed,agent.lost", "--webhook", hook.URL+"/flotilla", "-o", "json")
	var created struct {
		Subscription struct {
			ID     string   `json:"id"`
			Events []string `json:"events"`
		} `json:"subscription"`
		GeneratedSecret string `json:"generatedSecret"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || r.code != 0 {
		t.Fatalf("create: exit %d, %v: %q", r.code, err, r.stdout)
	}
	id := created.Subscription.ID
	if len(created.Subscription.Events) != 2 || !strings.HasPrefix(created.GeneratedSecret, "whsec_") {
		t.Errorf("created %+v; want two events and a generated secret", created)
	}
	if r := p.run("notify", "sub", "ls"); r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "rollout.failed,agent.lost") {
		t.Errorf("ls: exit %d\n%s", r.code, r.stdout)
	}
	if r := p.run("notify", "sub", "test", id); r.code != 0 {
		t.Fatalf("test: exit %d", r.code)
	}
	eventually(t, "the test event's delivery attempt", func() error {
		r := p.quiet("notify", "sub", "deliveries", id, "-o", "json")
		var page struct {
			Attempts []struct {
				HTTPStatus int `json:"httpStatus"`
			} `json:"attempts"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &page); err != nil {
			return fmt.Errorf("exit %d, %v: %q", r.code, err, r.stdout)
		}
		if len(page.Attempts) == 0 || page.Attempts[0].HTTPStatus != http.StatusNoContent {
			return fmt.Errorf("attempts %+v, %d requests received", page.Attempts, received.Load())
		}
		return nil
	})
	if r := p.run("notify", "sub", "update", id, "--paused"); r.code != 0 || !strings.Contains(r.stdout, "paused:          yes") ||
		!strings.Contains(r.stdout, "rollout.failed,agent.lost") {
		t.Errorf("update --paused (events kept): exit %d\n%s", r.code, r.stdout)
	}
	if r := p.run("notify", "sub", "delete", id); r.code != 0 {
		t.Errorf("delete: exit %d", r.code)
	}
	if r := p.run("notify", "sub", "get", id); r.code != int(exitcode.Invalid) || !strings.Contains(r.stderr, "NotFound") {
		t.Errorf("get after delete: exit %d, stderr %q", r.code, r.stderr)
	}
}

// remediations: the list of a service's automatic restarts is a table (empty
// on a fleet without a policy), -o json is the API's answer, and a bad
// --limit is refused before any call.
func remediations(t *testing.T, p *plane) {
	if r := p.run("service", "remediations", "web"); r.code != 0 || !strings.Contains(r.stdout, "ACTION") || !strings.Contains(r.stdout, "EVIDENCE") {
		t.Errorf("remediations web: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := p.run("service", "remediations", "-o", "json", "--agent", "nobody"); r.code != 0 || strings.TrimSpace(r.stdout) != "{}" {
		t.Errorf("remediations -o json: exit %d, %q", r.code, r.stdout)
	}
	if r := p.run("service", "remediations", "--limit", "0"); r.code != int(exitcode.Invalid) || !strings.Contains(r.stderr, "--limit") {
		t.Errorf("remediations --limit 0: exit %d, stderr %q; want %d naming --limit", r.code, r.stderr, exitcode.Invalid)
	}
}
