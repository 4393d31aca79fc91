package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/output"
)

func (a *app) agentsCommand() *cobra.Command {
	c := &cobra.Command{Use: "agents", Aliases: []string{"agent"}, Short: "The fleet's agents"}
	var selector string
	var states []string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List agents, filtered by a label selector and states",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &flotillav1.ListAgentsRequest{Selector: selector, PageSize: 1000}
			for _, s := range states {
				st, err := parseAgentState(s)
				if err != nil {
					return err
				}
				req.States = append(req.States, st)
			}
			return a.listAgents(cmd, req)
		},
	}
	ls.Flags().StringVarP(&selector, "selector", "l", "", `label selector, e.g. "env=prod,role in (web,api)"`)
	ls.Flags().StringSliceVar(&states, "state", nil, "only agents in these states: connected, disconnected, lost")
	get := &cobra.Command{
		Use:   "get AGENT_ID",
		Short: "Show one agent with its last heartbeat",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Fleet.GetAgent, &flotillav1.GetAgentRequest{AgentId: args[0]})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprint(a.env.Stdout, agentDetail(resp.GetAgent(), time.Now()))
			return err
		},
	}
	c.AddCommand(ls, get, a.deregisterCommand())
	return c
}

func parseAgentState(s string) (flotillav1.AgentState, error) {
	v, ok := flotillav1.AgentState_value["AGENT_STATE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usage("--state %q: want connected, disconnected or lost", s)
	}
	return flotillav1.AgentState(v), nil
}

// listAgents lists every page; -o json prints one response per page.
func (a *app) listAgents(cmd *cobra.Command, req *flotillav1.ListAgentsRequest) error {
	c, err := a.connect()
	if err != nil {
		return err
	}
	var t *output.TableWriter
	if !a.format.Machine() {
		t = output.NewTable(a.env.Stdout, "ID", "HOSTNAME", "STATE", "LAST SEEN", "VERSION", "LABELS")
	}
	now := time.Now()
	for {
		resp, err := call(cmd.Context(), c.Fleet.ListAgents, req)
		if err != nil {
			return err
		}
		if done, err := a.emit(resp); err != nil {
			return err
		} else if !done {
			for _, ag := range resp.GetAgents() {
				t.Row(ag.GetId(), ag.GetHostname(), enumName(ag.GetState(), "AGENT_STATE_"),
					age(ag.GetLastSeenAt(), now), ag.GetVersion(), labels(ag.GetLabels()))
			}
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if t != nil {
		return t.Flush()
	}
	return nil
}

func agentDetail(ag *flotillav1.Agent, now time.Time) string {
	var k kv
	k.add("id", ag.GetId())
	k.add("hostname", ag.GetHostname())
	state := enumName(ag.GetState(), "AGENT_STATE_")
	if r := ag.GetStateReason(); r != "" {
		state += " (" + r + ")"
	}
	k.add("state", state)
	k.add("labels", labels(ag.GetLabels()))
	k.add("version", ag.GetVersion())
	k.add("capabilities", strings.Join(ag.GetCapabilities(), ","))
	k.add("peer", ag.GetPeerAddress())
	k.add("registered", ts(ag.GetRegisteredAt()))
	k.add("connected", ts(ag.GetConnectedAt()))
	k.add("last seen", ts(ag.GetLastSeenAt())+" ("+age(ag.GetLastSeenAt(), now)+" ago)")
	k.add("cert expires", ts(ag.GetCertificateExpiresAt()))
	hb := ag.GetLastHeartbeat()
	if h := hb.GetHost(); h != nil {
		k.add("cpu", fmt.Sprintf("%.1f%%", h.GetCpuPercent()))
		k.add("memory", fmt.Sprintf("%.1f%%", h.GetMemoryPercent()))
	}
	if app := hb.GetApp(); app != nil {
		health := fmt.Sprintf("healthy=%t status=%s http=%d", app.GetHealthy(), app.GetStatus(), app.GetHttpStatus())
		if e := app.GetError(); e != "" {
			health += " error=" + e
		}
		k.add("app health", health)
	}
	for _, c := range ag.GetContainers() {
		k.add("container", fmt.Sprintf("%s %s (%s)", c.GetName(), c.GetImage(), c.GetState())+containerResources(c))
	}
	return k.String()
}

// containerResources is a container's last resource reading, as " cpu
// 1.5% mem 49.6 MiB / 128.0 MiB (39%) restarts 0 oom-kills 0", or "" when
// the agent reported none.
func containerResources(c *flotillav1.ManagedContainer) string {
	res := c.GetResources()
	if res == nil {
		return ""
	}
	var b strings.Builder
	if c.GetState() == "running" {
		fmt.Fprintf(&b, " cpu %.1f%% mem %s", res.GetCpuPercent(), mebibytes(res.GetMemoryWorkingSetBytes()))
		if limit := res.GetMemoryLimitBytes(); limit > 0 {
			fmt.Fprintf(&b, " / %s (%.0f%%)", mebibytes(limit), float64(res.GetMemoryWorkingSetBytes())/float64(limit)*100)
		}
	}
	fmt.Fprintf(&b, " restarts %d oom-kills %d", res.GetRestartCount(), res.GetOomKills())
	if res.GetOomKilled() {
		b.WriteString(" (last exit: OOM kill)")
	}
	return b.String()
}

func mebibytes(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func (a *app) deregisterCommand() *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "deregister AGENT_ID",
		Short: "Remove an agent for good (admin): its stream closes, its certificate is refused",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Admin.DeregisterAgent, &flotillav1.DeregisterAgentRequest{AgentId: args[0], Reason: reason})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.env.Stdout, "agent %s deregistered\n", args[0])
			return err
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, for the audit trail")
	return c
}
