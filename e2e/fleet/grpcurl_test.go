package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"time"
)

// grpcurl runs the real grpcurl against the control plane's published
// port, as an engineer on the host would.
type grpcurl struct {
	path, addr, caFile, token string
}

// run invokes grpcurl with args after the TLS and token options and
// returns its combined output; a non-zero exit is an error.
func (g grpcurl) run(args ...string) (string, error) {
	full := []string{"-cacert", g.caFile}
	if g.token != "" {
		full = append(full, "-H", "authorization: Bearer "+g.token)
	}
	full = append(full, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, g.path, full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("grpcurl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// call invokes method with req as JSON and decodes the JSON answer.
func (g grpcurl) call(method string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	out, err := g.run("-d", string(body), g.addr, method)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), resp)
}

// agentJSON is the part of grpcurl's rendering of flotilla.v1.Agent that
// the scenarios read.
type agentJSON struct {
	ID            string            `json:"id"`
	Hostname      string            `json:"hostname"`
	Labels        map[string]string `json:"labels"`
	State         string            `json:"state"`
	ConnectedAt   time.Time         `json:"connectedAt"`
	Containers    []containerJSON   `json:"containers"`
	LastHeartbeat struct {
		Host struct {
			CPUPercent    *float64 `json:"cpuPercent"`
			MemoryPercent float64  `json:"memoryPercent"`
			Disks         []struct {
				Path string `json:"path"`
			} `json:"disks"`
		} `json:"host"`
		App struct {
			Healthy bool `json:"healthy"`
		} `json:"app"`
	} `json:"lastHeartbeat"`
}

// containerJSON is flotilla.v1.ManagedContainer.
type containerJSON struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	State string `json:"state"`
}

// listAgents is ListAgents with a label selector.
func (g grpcurl) listAgents(selector string) ([]agentJSON, error) {
	var list struct {
		Agents []agentJSON `json:"agents"`
	}
	err := g.call("flotilla.v1.FleetService/ListAgents", map[string]any{"selector": selector}, &list)
	return list.Agents, err
}

// getAgent is GetAgent.
func (g grpcurl) getAgent(id string) (agentJSON, error) {
	var one struct {
		Agent agentJSON `json:"agent"`
	}
	err := g.call("flotilla.v1.FleetService/GetAgent", map[string]string{"agent_id": id}, &one)
	return one.Agent, err
}

// httpGet returns the body of a 200 answer.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}
