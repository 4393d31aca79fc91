package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// DockerSocket is where the agent looks for Docker when nothing
// configures it (agent/cmd/flotilla-agent: wantsDocker).
const DockerSocket = "/var/run/docker.sock"

// AgentUsesDocker reports whether a real agent started here without
// Docker configuration would open the Docker executor: it does when
// DOCKER_HOST is set or the default socket exists.
func AgentUsesDocker() bool {
	if os.Getenv("DOCKER_HOST") != "" {
		return true
	}
	_, err := os.Stat(DockerSocket)
	return err == nil
}

// Agent is a running real flotilla-agent.
type Agent struct {
	Proc     *Process
	Hostname string
	// ID is the agent's ID once the control plane has registered it.
	ID string
}

// StartAgent starts bin/flotilla-agent with its defaults (heartbeat
// interval, backoff, log level) against cp, registering with a new join
// token, and waits until it is connected.
func (e *Env) StartAgent(ctx context.Context, cp *ControlPlane, hostname string) (*Agent, error) {
	tokenFile, pin, err := cp.JoinToken(ctx, 1)
	if err != nil {
		return nil, err
	}
	args := []string{
		"-control-plane.address", cp.GRPCAddr, "-control-plane.ca-sha256", pin,
		"-join-token-file", tokenFile, "-state-dir", filepath.Join(e.Dir, "agent-"+hostname), "-hostname", hostname,
	}
	p, err := e.start("agent-"+hostname, "flotilla-agent", args, nil, nil)
	if err != nil {
		return nil, err
	}
	a := &Agent{Proc: p, Hostname: hostname}
	if _, err := a.WaitState(ctx, cp, flotillav1.AgentState_AGENT_STATE_CONNECTED, time.Minute); err != nil {
		return nil, err
	}
	return a, nil
}

// Get returns the control plane's record of the agent, found by hostname
// the first time.
func (a *Agent) Get(ctx context.Context, cp *ControlPlane) (*flotillav1.Agent, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if a.ID != "" {
		got, err := cp.Fleet.GetAgent(ctx, &flotillav1.GetAgentRequest{AgentId: a.ID})
		if err != nil {
			return nil, fmt.Errorf("GetAgent %s: %w", a.ID, err)
		}
		return got.GetAgent(), nil
	}
	// Every benchmark control plane is new, so its fleet is small: one
	// page holds it.
	resp, err := cp.Fleet.ListAgents(ctx, &flotillav1.ListAgentsRequest{PageSize: 1000})
	if err != nil {
		return nil, fmt.Errorf("ListAgents: %w", err)
	}
	for _, ag := range resp.GetAgents() {
		if ag.GetHostname() == a.Hostname {
			a.ID = ag.GetId()
			return ag, nil
		}
	}
	return nil, errNotRegistered
}

var errNotRegistered = errors.New("not registered yet")

// WaitState polls the control plane every 100 ms until the agent is in
// state, and returns the record that showed it.
func (a *Agent) WaitState(ctx context.Context, cp *ControlPlane, state flotillav1.AgentState, timeout time.Duration) (*flotillav1.Agent, error) {
	deadline := time.Now().Add(timeout)
	var last *flotillav1.Agent
	var lastErr error
	for {
		if err := cp.Proc.CheckRunning(); err != nil {
			return nil, err
		}
		if err := a.Proc.CheckRunning(); err != nil {
			return nil, err
		}
		last, lastErr = a.Get(ctx, cp)
		if lastErr == nil && last.GetState() == state {
			return last, nil
		}
		if time.Now().After(deadline) {
			if lastErr == nil {
				lastErr = fmt.Errorf("state %s (%s)", last.GetState(), last.GetStateReason())
			}
			return nil, fmt.Errorf("agent %s not %s after %s: %v; agent log %s:\n%s", a.Hostname,
				strings.ToLower(strings.TrimPrefix(state.String(), "AGENT_STATE_")), timeout, lastErr, a.Proc.LogPath, a.Proc.Tail(10))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
