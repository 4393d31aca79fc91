package grpcurl

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The services' full names, as grpcurl takes a method: FleetService+"ListAgents".
const (
	FleetService   = "flotilla.v1.FleetService/"
	RolloutService = "flotilla.v1.RolloutService/"
	AdminService   = "flotilla.v1.AdminService/"
	HealthCheck    = "grpc.health.v1.Health/Check"
)

// callTimeout bounds one unary call.
const callTimeout = 20 * time.Second

// Client runs grpcurl against one control plane.
type Client struct {
	// Path is the grpcurl binary.
	Path string
	// Addr is the control plane's gRPC address (host:port).
	Addr string
	// CAFile is the control plane's CA certificate (-cacert).
	CAFile string
	// Token is the bearer token sent with every call; empty sends none.
	Token string
}

// options are the TLS and token options that precede every call's own.
func (c Client) options() []string {
	full := []string{"-cacert", c.CAFile}
	if c.Token != "" {
		full = append(full, "-H", "authorization: Bearer "+c.Token)
	}
	return full
}

// Run invokes grpcurl with args after the TLS and token options and
// returns its combined output; a non-zero exit is an error.
func (c Client) Run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.Path, append(c.options(), args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("grpcurl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Serving returns nil once the control plane answers the health check.
func (c Client) Serving() error {
	_, err := c.Run(c.Addr, HealthCheck)
	return err
}

// Call invokes method (a full name) with req as JSON and decodes the JSON
// answer into resp, unless resp is nil.
func (c Client) Call(method string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	out, err := c.Run("-d", string(body), c.Addr, method)
	if err != nil || resp == nil {
		return err
	}
	return json.Unmarshal([]byte(out), resp)
}

// Typed renders a grpcurl invocation as an engineer types it at a shell,
// with the CA file and token as the README's variables, for the log.
func Typed(args ...string) string {
	parts := []string{"grpcurl", "-cacert", "$CA", "-H", `"authorization: Bearer $FLOTILLA_TOKEN"`}
	for _, a := range args {
		if strings.ContainsAny(a, " \"{}[]$*;&|<>()'\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// Invoke runs a unary method (a full name) with a JSON body exactly as
// typed, logs the command line and an abridged answer, and returns
// grpcurl's combined output; a non-zero exit is an error.
func (c Client) Invoke(t testing.TB, method, body string) (string, error) {
	t.Helper()
	args := []string{"-d", body, c.Addr, method}
	t.Logf("$ %s", Typed(args...))
	out, err := c.Run(args...)
	t.Logf("  → %s", AbridgeLines(out, 40))
	return out, err
}

// RPC invokes a unary method and decodes its JSON answer into out,
// failing the test on an error.
func (c Client) RPC(t testing.TB, method, body string, out any) {
	t.Helper()
	text, err := c.Invoke(t, method, body)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if err := json.Unmarshal([]byte(text), out); err != nil {
		t.Fatalf("%s answered what is not JSON: %v\n%s", method, err, text)
	}
}

// ListAgents is ListAgents with a label selector.
func (c Client) ListAgents(selector string) ([]Agent, error) {
	var list struct {
		Agents []Agent `json:"agents"`
	}
	err := c.Call(FleetService+"ListAgents", map[string]any{"selector": selector}, &list)
	return list.Agents, err
}

// GetAgent is GetAgent.
func (c Client) GetAgent(id string) (Agent, error) {
	var one struct {
		Agent Agent `json:"agent"`
	}
	err := c.Call(FleetService+"GetAgent", map[string]string{"agent_id": id}, &one)
	return one.Agent, err
}

// CreateJoinToken creates a join token for uses registrations, labelling
// the agents env=e2e, and fails the test on an error.
func (c Client) CreateJoinToken(t testing.TB, description string, uses int) JoinToken {
	t.Helper()
	var j JoinToken
	if err := c.Call(FleetService+"CreateJoinToken", map[string]any{
		"description": description, "labels": map[string]string{"env": "e2e"}, "ttl": "600s", "max_uses": uses,
	}, &j); err != nil {
		t.Fatal(err)
	}
	if j.Token == "" || len(j.CACertSHA256) != 64 {
		t.Fatalf("CreateJoinToken answered %+v", j)
	}
	return j
}

// GetRollout is GetRollout.
func (c Client) GetRollout(id string) (Rollout, error) {
	var resp RolloutResponse
	err := c.Call(RolloutService+"GetRollout", map[string]string{"rollout_id": id}, &resp)
	return resp.Rollout, err
}

// AbridgeLines keeps the first n lines of s.
func AbridgeLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n[... %d more lines]", len(lines)-n)
}

// Abridge keeps a long stream printout readable in the log.
func Abridge(s string) string {
	const limit = 6000
	if len(s) <= limit {
		return s
	}
	return s[:limit/2] + "\n[...]\n" + s[len(s)-limit/2:]
}
