package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// agentJSON is the part of grpcurl's JSON rendering of flotilla.v1.Agent
// that the tests read.
type agentJSON struct {
	ID            string            `json:"id"`
	Hostname      string            `json:"hostname"`
	Labels        map[string]string `json:"labels"`
	State         string            `json:"state"`
	StateReason   string            `json:"stateReason"`
	LastHeartbeat struct {
		Host struct {
			CPUPercent    *float64 `json:"cpuPercent"`
			MemoryPercent float64  `json:"memoryPercent"`
			Disks         []struct {
				Path        string  `json:"path"`
				UsedPercent float64 `json:"usedPercent"`
			} `json:"disks"`
		} `json:"host"`
		App struct {
			Healthy  bool   `json:"healthy"`
			Status   string `json:"status"`
			Database string `json:"database"`
			Cache    string `json:"cache"`
			Latency  string `json:"latency"`
		} `json:"app"`
	} `json:"lastHeartbeat"`
}

type listAgentsJSON struct {
	Agents    []agentJSON `json:"agents"`
	TotalSize int         `json:"totalSize"`
}

// TestBinariesEndToEnd starts the real control plane and agent, drives
// them with the real grpcurl, and reads /metrics, as the README shows.
func TestBinariesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	cpBin, agentBin, grpcurlBin := binary(t, "flotilla-controlplane"), binary(t, "flotilla-agent"), binary(t, "grpcurl")
	dir := t.TempDir()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	const lostAfter = 3 * time.Second

	cp := start(t, "controlplane", cpBin, nil,
		"-data-dir", filepath.Join(dir, "cp"), "-listen", grpcAddr, "-metrics-listen", httpAddr,
		"-agent-lost-after", lostAfter.String(), "-log-format", "console")
	g := grpcurl{path: grpcurlBin, addr: grpcAddr, caFile: filepath.Join(dir, "cp", "ca.crt")}
	eventually(t, 15*time.Second, "the control plane to serve", func() error {
		_, err := g.run(grpcAddr, "grpc.health.v1.Health/Check")
		return err
	})
	token, err := os.ReadFile(filepath.Join(dir, "cp", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	g.token = strings.TrimSpace(string(token))

	t.Run("reflection", func(t *testing.T) {
		out, err := g.run(grpcAddr, "list")
		if err != nil {
			t.Fatal(err)
		}
		for _, svc := range []string{"flotilla.v1.AgentService", "flotilla.v1.FleetService", "grpc.health.v1.Health"} {
			if !strings.Contains(out, svc) {
				t.Errorf("grpcurl list lacks %s:\n%s", svc, out)
			}
		}
		out, err = g.run(grpcAddr, "describe", "flotilla.v1.FleetService.ListAgents")
		if err != nil || !strings.Contains(out, "rpc ListAgents ( .flotilla.v1.ListAgentsRequest )") {
			t.Errorf("describe: %v\n%s", err, out)
		}
	})

	t.Run("errors name the field", func(t *testing.T) {
		out, err := g.run("-d", `{"page_size": -1}`, grpcAddr, "flotilla.v1.FleetService/ListAgents")
		if err == nil || !strings.Contains(out, "InvalidArgument") || !strings.Contains(out, "page_size") {
			t.Errorf("ListAgents page_size=-1: %v\n%s", err, out)
		}
		anon := g
		anon.token = ""
		out, err = anon.run(grpcAddr, "flotilla.v1.FleetService/ListAgents")
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

	var join struct {
		Token        string `json:"token"`
		CACertSHA256 string `json:"caCertSha256"`
	}
	if err := g.call("flotilla.v1.FleetService/CreateJoinToken", map[string]any{
		"description": "e2e", "labels": map[string]string{"env": "e2e"}, "ttl": "300s", "max_uses": 1,
	}, &join); err != nil {
		t.Fatal(err)
	}
	if join.Token == "" || len(join.CACertSHA256) != 64 {
		t.Fatalf("CreateJoinToken answered %+v", join)
	}

	agentArgs := []string{"-control-plane.address", grpcAddr, "-state-dir", filepath.Join(dir, "agent"),
		"-hostname", "e2e-web-1", "-labels", "role=web", "-heartbeat-interval", "1s",
		"-health.url", app.URL + "/health", "-log.format", "console"}
	// First boot pins the CA by its fingerprint, as on a new EC2 host.
	agent := start(t, "agent", agentBin, []string{"FLOTILLA_JOIN_TOKEN=" + join.Token, "FLOTILLA_CONTROL_PLANE_CA_SHA256=" + join.CACertSHA256}, agentArgs...)

	var got agentJSON
	eventually(t, 20*time.Second, "the agent to connect with metrics and app health", func() error {
		var list listAgentsJSON
		if err := g.call("flotilla.v1.FleetService/ListAgents", map[string]any{"selector": "env=e2e,role=web"}, &list); err != nil {
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
		Agent agentJSON `json:"agent"`
	}
	if err := g.call("flotilla.v1.FleetService/GetAgent", map[string]string{"agent_id": got.ID}, &one); err != nil || one.Agent.ID != got.ID {
		t.Fatalf("GetAgent: %v %+v", err, one)
	}
	eventually(t, 5*time.Second, "per-agent metrics", func() error {
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
	agent.signal(syscall.SIGKILL)
	agent.wait(t, 5*time.Second)
	killedAt := time.Now()
	eventually(t, lostAfter+5*time.Second, "the killed agent to be lost", func() error {
		if err := g.call("flotilla.v1.FleetService/GetAgent", map[string]string{"agent_id": got.ID}, &one); err != nil {
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
	agent2 := start(t, "agent-restarted", agentBin, nil, agentArgs...)
	eventually(t, 20*time.Second, "the restarted agent to reconnect", func() error {
		if err := g.call("flotilla.v1.FleetService/GetAgent", map[string]string{"agent_id": got.ID}, &one); err != nil {
			return err
		}
		if one.Agent.State != "AGENT_STATE_CONNECTED" {
			return fmt.Errorf("state %s", one.Agent.State)
		}
		return nil
	})
	agent2.signal(syscall.SIGTERM)
	if code := agent2.wait(t, 10*time.Second); code != 0 {
		t.Errorf("agent exit code after SIGTERM = %d, want 0", code)
	}
	eventually(t, 5*time.Second, "the stopped agent to be disconnected", func() error {
		if err := g.call("flotilla.v1.FleetService/GetAgent", map[string]string{"agent_id": got.ID}, &one); err != nil {
			return err
		}
		if one.Agent.State != "AGENT_STATE_DISCONNECTED" {
			return fmt.Errorf("state %s", one.Agent.State)
		}
		return nil
	})

	cp.signal(syscall.SIGTERM)
	if code := cp.wait(t, 15*time.Second); code != 0 {
		t.Errorf("control plane exit code after SIGTERM = %d, want 0", code)
	}
}
