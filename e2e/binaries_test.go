package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// TestBinariesEndToEnd starts the real control plane and agent, drives
// them with the real grpcurl, and reads /metrics, as the README shows.
func TestBinariesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	agentBin := fixture.Binary(t, "flotilla-agent")
	dir := t.TempDir()
	const lostAfter = 3 * time.Second
	cp := startControlPlane(t, dir, withFlags("-agent-lost-after", lostAfter.String()))
	g, grpcAddr, httpAddr := cp.api, cp.api.Addr, cp.metricsAddr

	t.Run("reflection", func(t *testing.T) {
		out, err := g.Run(grpcAddr, "list")
		if err != nil {
			t.Fatal(err)
		}
		for _, svc := range []string{"flotilla.v1.AgentService", "flotilla.v1.FleetService", "grpc.health.v1.Health"} {
			if !strings.Contains(out, svc) {
				t.Errorf("grpcurl list lacks %s:\n%s", svc, out)
			}
		}
		out, err = g.Run(grpcAddr, "describe", "flotilla.v1.FleetService.ListAgents")
		if err != nil || !strings.Contains(out, "rpc ListAgents ( .flotilla.v1.ListAgentsRequest )") {
			t.Errorf("describe: %v\n%s", err, out)
		}
	})

	t.Run("errors name the field", func(t *testing.T) {
		out, err := g.Run("-d", `{"page_size": -1}`, grpcAddr, grpcurl.FleetService+"ListAgents")
		if err == nil || !strings.Contains(out, "InvalidArgument") || !strings.Contains(out, "page_size") {
			t.Errorf("ListAgents page_size=-1: %v\n%s", err, out)
		}
		anon := g
		anon.Token = ""
		out, err = anon.Run(grpcAddr, grpcurl.FleetService+"ListAgents")
		if err == nil || !strings.Contains(out, "Unauthenticated") {
			t.Errorf("ListAgents without a token: %v\n%s", err, out)
		}
	})

	// The application the agent watches answers the deployment plan's JSON.
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"healthy","timestamp":%q,"database":"ok","cache":"ok"}`, time.Now().UTC().Format(time.RFC3339))
	}))
	defer app.Close()

	join := g.CreateJoinToken(t, "e2e", 1)

	agentArgs := []string{"-control-plane.address", grpcAddr, "-state-dir", filepath.Join(dir, "agent"),
		"-hostname", "e2e-web-1", "-labels", "role=web", "-heartbeat-interval", "1s",
		"-health.url", app.URL + "/health", "-log.format", "console"}
	// First boot pins the CA by its fingerprint, as on a new EC2 host.
	agent := fixture.StartProcess(t, "agent", agentBin, []string{"FLOTILLA_JOIN_TOKEN=" + join.Token, "FLOTILLA_CONTROL_PLANE_CA_SHA256=" + join.CACertSHA256}, agentArgs...)

	var got grpcurl.Agent
	fixture.Eventually(t, 20*time.Second, "the agent to connect with metrics and app health", func() error {
		var list grpcurl.ListAgentsResponse
		if err := g.Call(grpcurl.FleetService+"ListAgents", map[string]any{"selector": "env=e2e,role=web"}, &list); err != nil {
			return err
		}
		if len(list.Agents) != 1 {
			return fmt.Errorf("%d agents", len(list.Agents))
		}
		got = list.Agents[0]
		hb := got.LastHeartbeat
		if got.State != "AGENT_STATE_CONNECTED" || hb.Host.CPUPercent == nil || hb.Host.MemoryPercent == 0 || len(hb.Host.Disks) == 0 || !hb.App.Healthy {
			b, _ := json.Marshal(got)
			return fmt.Errorf("not yet: %s", b)
		}
		return nil
	})
	if got.Hostname != "e2e-web-1" || got.Labels["env"] != "e2e" || got.LastHeartbeat.App.Database != "ok" || got.LastHeartbeat.App.Cache != "ok" {
		t.Errorf("agent = %+v", got)
	}
	var one struct {
		Agent grpcurl.Agent `json:"agent"`
	}
	if err := g.Call(grpcurl.FleetService+"GetAgent", map[string]string{"agent_id": got.ID}, &one); err != nil || one.Agent.ID != got.ID {
		t.Fatalf("GetAgent: %v %+v", err, one)
	}
	fixture.Eventually(t, 5*time.Second, "per-agent metrics", func() error {
		_, body, err := httpGet("http://" + httpAddr + "/metrics")
		if err != nil {
			return err
		}
		for _, want := range []string{
			`flotilla_agents{state="connected"} 1`,
			`flotilla_agent_cpu_percent{agent="` + got.ID + `",env="e2e",role="web"}`,
			`flotilla_agent_memory_percent{agent="` + got.ID + `"`,
			`flotilla_agent_disk_percent{agent="` + got.ID + `"`,
			`flotilla_agent_app_healthy{agent="` + got.ID + `",env="e2e",role="web"} 1`,
			// The agents' stream is counted by flotilla's own series,
			// not message by message by the gRPC middleware.
			`flotilla_agent_streams 1`,
			`grpc_server_started_total{grpc_method="Register"`,
		} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("/metrics lacks %s", want)
			}
		}
		return nil
	})
	code, body, err := httpGet("http://" + httpAddr + "/healthz")
	if err != nil || code != 200 || !strings.Contains(body, `"status":"healthy"`) || !strings.Contains(body, `"database":"ok"`) {
		t.Errorf("/healthz = %d %s %v", code, body, err)
	}

	// Killed without a chance to say goodbye, the agent is lost within
	// agent_lost_after (plus the one-second sweep).
	agent.Signal(syscall.SIGKILL)
	agent.Wait(t, 5*time.Second)
	killedAt := time.Now()
	fixture.Eventually(t, lostAfter+5*time.Second, "the killed agent to be lost", func() error {
		if err := g.Call(grpcurl.FleetService+"GetAgent", map[string]string{"agent_id": got.ID}, &one); err != nil {
			return err
		}
		if one.Agent.State != "AGENT_STATE_LOST" {
			return fmt.Errorf("state %s", one.Agent.State)
		}
		return nil
	})
	t.Logf("agent lost %s after SIGKILL (agent_lost_after %s)", time.Since(killedAt).Round(100*time.Millisecond), lostAfter)
	_, body, _ = httpGet("http://" + httpAddr + "/metrics")
	if !strings.Contains(body, `flotilla_agents{state="lost"} 1`) || !strings.Contains(body, `flotilla_agent_up{agent="`+got.ID+`",env="e2e",role="web"} 0`) {
		t.Errorf("/metrics does not show the lost agent")
	}

	// Restarted, the agent keeps its identity (no new registration: the
	// single-use token is spent) and stops cleanly on SIGTERM.
	agent2 := fixture.StartProcess(t, "agent-restarted", agentBin, nil, agentArgs...)
	fixture.Eventually(t, 20*time.Second, "the restarted agent to reconnect", func() error {
		if err := g.Call(grpcurl.FleetService+"GetAgent", map[string]string{"agent_id": got.ID}, &one); err != nil {
			return err
		}
		if one.Agent.State != "AGENT_STATE_CONNECTED" {
			return fmt.Errorf("state %s", one.Agent.State)
		}
		return nil
	})
	agent2.Signal(syscall.SIGTERM)
	if code := agent2.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("agent exit code after SIGTERM = %d, want 0", code)
	}
	fixture.Eventually(t, 5*time.Second, "the stopped agent to be disconnected", func() error {
		if err := g.Call(grpcurl.FleetService+"GetAgent", map[string]string{"agent_id": got.ID}, &one); err != nil {
			return err
		}
		if one.Agent.State != "AGENT_STATE_DISCONNECTED" {
			return fmt.Errorf("state %s", one.Agent.State)
		}
		return nil
	})

	cp.proc.Signal(syscall.SIGTERM)
	if code := cp.proc.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("control plane exit code after SIGTERM = %d, want 0", code)
	}
}
