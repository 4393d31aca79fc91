package app

import (
	"strings"

	"github.com/spf13/cobra"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/output"
)

// serviceRemediationsCommand lists what a memory remediation policy did:
// automatic restarts, escalations and OOM kills, newest first.
func (a *app) serviceRemediationsCommand() *cobra.Command {
	var agent string
	var limit int32
	c := &cobra.Command{
		Use:   "remediations [NAME]",
		Short: "Automatic restarts, escalations and OOM kills of a service (all services without NAME), newest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 || limit > 500 {
				return usage("--limit must be 1-500, got %d", limit)
			}
			req := &flotillav1.ListRemediationsRequest{AgentId: agent, PageSize: limit}
			if len(args) == 1 {
				req.Service = args[0]
			}
			cl, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), cl.Rollout.ListRemediations, req)
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			t := output.NewTable(a.env.Stdout, "WHEN", "SERVICE", "AGENT", "ACTION", "REASON", "ROLLOUT", "EVIDENCE")
			for _, ev := range resp.GetEvents() {
				t.Row(ts(ev.GetOccurredAt()), ev.GetService(), ev.GetAgentId(), remediationAction(ev.GetAction()),
					ev.GetReason(), ev.GetRolloutId(), ev.GetEvidence())
			}
			return t.Flush()
		},
	}
	c.Flags().StringVar(&agent, "agent", "", "only this agent's events")
	c.Flags().Int32Var(&limit, "limit", 50, "at most this many (1-500)")
	return c
}

// remediationAction names an action the way an operator reads it:
// "restart", "escalation", "oom-kill".
func remediationAction(a flotillav1.RemediationAction) string {
	name := strings.TrimPrefix(a.String(), "REMEDIATION_ACTION_")
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}
