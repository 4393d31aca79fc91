package e2e

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// Timings of the outage test: the database is away for outageLength; the
// pulls held by the registry fail releaseAfter into it, so that the agent
// reports their results while the database is away.
const (
	outageLength = 20 * time.Second
	releaseAfter = 8 * time.Second
	// probeDeadline is the deadline of each call made during the outage:
	// an answer must come before it.
	probeDeadline = 10 * time.Second
	// probePause is the pause between two calls during the outage.
	probePause = 250 * time.Millisecond
)

// TestPostgresOutage stops PostgreSQL for 20 s under a control plane
// (the default lease TTL, 10 s: its replica lease lapses and is taken
// again) with a connected agent, a command and a rollout in
// progress (their pulls held by a registry that does not answer), and
// checks: every call made during the outage answers Unavailable (or, when
// served from memory, OK) before its deadline, never Internal; /healthz
// says the database is down; the control plane does not exit; when the
// database is back, the agent is connected, and the command and the
// rollout end with the results the agent reported during the outage.
func TestPostgresOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	dir := t.TempDir()
	db := startStoreDB(t, dir)
	cp := startControlPlane(t, dir, db.flags(), lostAfter5s)
	reg := startHeldRegistry(t)
	agentID := startAgentVia(t, cp.api, cp.api.Addr, dir, reg.addr)

	fc := cp.api.RunCommand(t, fmt.Sprintf(`{"agent_ids": [%q], "spec": {"pull": {"image": %q}}, "reason": "pull across an outage"}`,
		agentID, reg.addr+"/flotilla-e2e/held:v1"))
	rolloutID := startHeldRollout(t, cp.api, reg.addr+"/flotilla-e2e/held:v2")
	fixture.Eventually(t, 30*time.Second, "both pulls to reach the registry", func() error {
		if n := reg.accepted(); n < 2 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
	if got := cp.api.GetCommand(t, fc.ID); got.State != "FLEET_COMMAND_STATE_RUNNING" {
		t.Fatalf("the command is %s before the outage, want RUNNING", got.State)
	}

	if err := db.pg.Halt(); err != nil {
		t.Fatal(err)
	}
	halted := time.Now()
	t.Logf("PostgreSQL stopped")
	probes := probeOutage(t, []controlPlane{cp}, rolloutID, halted, reg)
	if err := db.pg.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	t.Logf("PostgreSQL started again %s after it stopped", resumed.Sub(halted).Round(100*time.Millisecond))
	probes.check(t)

	checkResumed(t, cp, agentID, fc.ID, rolloutID, resumed)
	if cp.proc.Exited() {
		t.Fatalf("the control plane exited:\n%s", cp.proc.Output())
	}
	// The outage outlasted the replica lease: it lapsed, was taken again,
	// and the replica claimed its streams again (the agent's stream may be
	// between two attempts at that instant: each event that cannot be
	// stored closes it; its next attach writes this replica as its holder).
	if out := cp.proc.Output(); !strings.Contains(out, "claiming the streams this replica holds again") {
		t.Errorf("the control plane did not claim its agent's stream again after its lease lapsed:\n%s", out)
	}
}

// heldRegistry accepts connections and never answers until released, then
// closes them all and stops listening: a pull hangs until then and fails
// after.
type heldRegistry struct {
	addr string
	ln   net.Listener

	mu    sync.Mutex
	conns []net.Conn
	n     int
}

func startHeldRegistry(t *testing.T) *heldRegistry {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &heldRegistry{addr: ln.Addr().String(), ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns, r.n = append(r.conns, c), r.n+1
			r.mu.Unlock()
		}
	}()
	t.Cleanup(r.release)
	return r
}

// accepted counts the connections accepted so far.
func (r *heldRegistry) accepted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// release stops listening and closes every connection.
func (r *heldRegistry) release() {
	_ = r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.conns = nil
}

// startHeldRollout gives the agent a managed container, defines a service
// on it and starts a rollout to image, returning its ID.
func startHeldRollout(t *testing.T, g grpcurl.Client, image string) string {
	t.Helper()
	return startIdleRollout(t, g, idleRollout{name: "outage", selector: "role=web", image: image, reason: "rollout across an outage"})
}

// idleRollout is a rollout of a service whose container exists but never
// runs (an empty image, created and not started): its agent manages it,
// and the rollout goes as far as the agent's pull of image allows.
type idleRollout struct {
	name, selector, image, reason string
}

// startIdleRollout creates the service's container, waits until an agent
// reports it, defines the service "<name>-e2e" on it and starts the
// rollout, returning its ID. Without Docker it skips (fails under
// FLOTILLA_E2E=1).
func startIdleRollout(t *testing.T, g grpcurl.Client, r idleRollout) string {
	t.Helper()
	d := fixture.NewDocker(t)
	base := d.Name(r.name+"-img") + ":v1"
	d.BuildImage(t, base, "FROM scratch\nCMD [\"/none\"]\n")
	container := d.Name(r.name + "-app")
	d.CreateContainer(t, fixture.ContainerSpec{Name: container, Image: base, Managed: true})
	fixture.Eventually(t, 20*time.Second, "the agent to report "+container, func() error {
		agents, err := g.ListAgents("")
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(agents, func(a grpcurl.Agent) bool {
			return slices.ContainsFunc(a.Containers, func(c grpcurl.ManagedContainer) bool { return c.Name == container })
		}) {
			return fmt.Errorf("no %s in %s", container, grpcurl.Dump(agents))
		}
		return nil
	})
	service := r.name + "-e2e"
	if err := g.Call(grpcurl.RolloutService+"PutService", map[string]any{"service": map[string]any{
		"name": service, "container": container, "selector": r.selector, "health_url": "http://127.0.0.1:9/health",
	}}, nil); err != nil {
		t.Fatal(err)
	}
	var resp grpcurl.RolloutResponse
	if err := g.Call(grpcurl.RolloutService+"StartRollout", map[string]any{
		"service": service, "image": r.image, "reason": r.reason,
	}, &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Rollout.ID
}

// outageProbes are the answers seen during the outage.
type outageProbes struct {
	halted time.Time
	// firstUnavailable is when a call first answered Unavailable.
	firstUnavailable time.Duration
	// codes counts the answers per method and code.
	codes map[string]int
	// slowest is the longest a call took.
	slowest time.Duration
	// bad are the answers that are neither OK nor Unavailable.
	bad []string
	// health are the /healthz answers.
	health []string
}

// probeOutage calls the API and /healthz of each control plane in turn
// (one, or every replica) until the outage has lasted outageLength,
// releasing the registry releaseAfter into it.
func probeOutage(t *testing.T, cps []controlPlane, rolloutID string, halted time.Time, reg *heldRegistry) *outageProbes {
	t.Helper()
	calls := []struct{ method, body string }{
		{grpcurl.FleetService + "ListAgents", `{}`},
		{grpcurl.FleetService + "ListCommands", `{}`},
		{grpcurl.RolloutService + "GetRollout", fmt.Sprintf(`{"rollout_id": %q}`, rolloutID)},
		{grpcurl.RolloutService + "StartRollout", `{"service": "absent", "image": "127.0.0.1:9/x:v3", "reason": "during the outage"}`},
		{grpcurl.FleetService + "RunCommand", `{"selector": "role=web", "spec": {"pull": {"image": "127.0.0.1:9/x:v3"}}, "reason": "during the outage"}`},
	}
	p := &outageProbes{halted: halted, codes: map[string]int{}}
	released := false
	for i := 0; time.Since(halted) < outageLength; i++ {
		if !released && time.Since(halted) >= releaseAfter {
			reg.release()
			released = true
			t.Logf("%s: the registry released the pulls", time.Since(halted).Round(100*time.Millisecond))
		}
		c, cp := calls[i%len(calls)], cps[i%len(cps)]
		p.call(cp.api, c.method, c.body)
		p.healthz(cp.metricsAddr)
		for _, cp := range cps {
			if cp.proc.Exited() {
				t.Fatalf("the control plane on %s exited during the outage:\n%s", cp.api.Addr, cp.proc.Output())
			}
		}
		time.Sleep(probePause)
	}
	return p
}

var grpcCode = regexp.MustCompile(`Code: (\w+)`)

// call makes one call with a deadline and records its answer.
func (p *outageProbes) call(g grpcurl.Client, method, body string) {
	began := time.Now()
	out, err := g.Run("-max-time", fmt.Sprint(probeDeadline.Seconds()), "-d", body, g.Addr, method)
	took := time.Since(began)
	p.slowest = max(p.slowest, took)
	code := "OK"
	if err != nil {
		code = "?"
		if m := grpcCode.FindStringSubmatch(out); m != nil {
			code = m[1]
		}
	}
	short := method[strings.LastIndex(method, "/")+1:]
	p.codes[short+" "+code]++
	switch code {
	case "Unavailable":
		if p.firstUnavailable == 0 {
			p.firstUnavailable = began.Sub(p.halted)
		}
	case "OK":
	default:
		if p.codes[short+" "+code] > 2 {
			return // reported twice already
		}
		p.bad = append(p.bad, fmt.Sprintf("%s after %s of outage (%s): %s", short, began.Sub(p.halted).Round(100*time.Millisecond), took.Round(time.Millisecond), strings.TrimSpace(out)))
	}
}

// healthz records what /healthz answers.
func (p *outageProbes) healthz(addr string) {
	code, body, err := httpGet("http://" + addr + "/healthz")
	p.health = append(p.health, fmt.Sprintf("%d %v %s", code, err, strings.TrimSpace(body)))
}

// check fails the test on a call that answered neither OK nor Unavailable,
// or a /healthz that did not report the database down.
func (p *outageProbes) check(t *testing.T) {
	t.Helper()
	t.Logf("calls during the outage: %v; first Unavailable %s after the stop; slowest call %s",
		p.codes, p.firstUnavailable.Round(10*time.Millisecond), p.slowest.Round(10*time.Millisecond))
	for _, b := range p.bad {
		t.Errorf("during the outage: %s", b)
	}
	if p.firstUnavailable == 0 {
		t.Errorf("no call answered Unavailable during the outage: %v", p.codes)
	}
	if p.slowest >= probeDeadline {
		t.Errorf("a call took %s, its deadline", p.slowest)
	}
	for _, h := range p.health {
		if !strings.HasPrefix(h, "503 ") || !strings.Contains(h, `"database":"error"`) {
			t.Errorf("/healthz during the outage: %s, want 503 with the database in error", h)
		}
	}
}

// checkResumed waits for the work to resume after the outage: the agent
// connected, the command and the rollout ended with the pulls' failures
// that the agent reported while the database was away.
func checkResumed(t *testing.T, cp controlPlane, agentID, commandID, rolloutID string, resumed time.Time) {
	t.Helper()
	fixture.Eventually(t, 30*time.Second, "the API to answer again", func() error {
		_, err := cp.api.ListAgents("")
		return err
	})
	t.Logf("the API answered %s after PostgreSQL started again", time.Since(resumed).Round(100*time.Millisecond))
	fixture.Eventually(t, 60*time.Second, "the command to end", func() error {
		fc := cp.api.GetCommand(t, commandID)
		if h := fc.Host(); fc.State == "FLEET_COMMAND_STATE_RUNNING" || h.State != "COMMAND_STATE_FAILED" || h.Message == "" {
			return fmt.Errorf("command %s", grpcurl.Dump(fc))
		}
		t.Logf("command %s ended %s %s after PostgreSQL started again: %s", commandID, fc.State,
			time.Since(resumed).Round(100*time.Millisecond), fc.Host().Message)
		return nil
	})
	fixture.Eventually(t, 90*time.Second, "the rollout to end", func() error {
		ro, err := cp.api.GetRollout(rolloutID)
		if err != nil {
			return err
		}
		// The host failed on the pull the registry let go during the
		// outage, as the agent reported it then.
		if !grpcurl.Ended(ro.State) || len(ro.Hosts) != 1 || !strings.Contains(ro.Hosts[0].Message, "held:v2") {
			return fmt.Errorf("rollout %s", grpcurl.Dump(ro))
		}
		t.Logf("rollout %s ended %s %s after PostgreSQL started again: %s; host: %s", rolloutID, ro.State,
			time.Since(resumed).Round(100*time.Millisecond), ro.Message, ro.Hosts[0].Message)
		return nil
	})
	fixture.Eventually(t, 30*time.Second, "the agent to be connected", func() error {
		a, err := cp.api.GetAgent(agentID)
		if err != nil {
			return err
		}
		if a.State != "AGENT_STATE_CONNECTED" {
			return fmt.Errorf("agent %s", a.State)
		}
		return nil
	})
	t.Logf("agent %s connected %s after PostgreSQL started again", agentID, time.Since(resumed).Round(100*time.Millisecond))
}
