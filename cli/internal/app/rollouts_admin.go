package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/output"
	"flotilla.dev/cli/internal/watch"
)

func (a *app) rolloutGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ROLLOUT_ID",
		Short: "Show a rollout with its plan and every host's step",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Rollout.GetRollout, &flotillav1.GetRolloutRequest{RolloutId: args[0]})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			return a.rolloutDetail(resp.GetRollout())
		},
	}
}

func (a *app) rolloutDetail(r *flotillav1.Rollout) error {
	var k kv
	k.add("id", r.GetId())
	k.add("service", r.GetService())
	k.add("image", r.GetImage())
	k.add("state", watch.StateName(r.GetState()))
	k.add("message", r.GetMessage())
	k.add("selector", r.GetSelector())
	k.add("reason", r.GetReason())
	k.add("created by", r.GetCreatedBy())
	k.add("created", ts(r.GetCreatedAt()))
	k.add("finished", ts(r.GetFinishedAt()))
	k.add("rollback of", r.GetRollbackOf())
	k.add("bake until", ts(r.GetBakeUntil()))
	k.add("resumes at", ts(r.GetResumeAt()))
	if r.GetOverrideWindow() {
		k.add("deploy windows", "overridden at the start")
	}
	if w := r.GetWindow(); w != nil {
		k.add("window", w.GetMessage())
	}
	k.add("keep previous until", ts(r.GetKeepUntil()))
	for _, res := range r.GetAnalysis().GetResults() {
		where := fmt.Sprintf("batch %d", res.GetBatch()+1)
		if res.GetBatch() < 0 {
			where = "bake"
		}
		k.add("analysis "+res.GetQuery(), fmt.Sprintf("%s (%s, %s): %s", strings.TrimPrefix(res.GetVerdict().String(), "ANALYSIS_VERDICT_"),
			where, ts(res.GetAt()), res.GetMessage()))
	}
	if _, err := fmt.Fprint(a.env.Stdout, k.String()); err != nil {
		return err
	}
	t := output.NewTable(a.env.Stdout, "BATCH", "HOST", "STEP", "SINCE", "PREVIOUS IMAGE", "MESSAGE")
	for _, h := range r.GetHosts() {
		t.Row(fmt.Sprint(h.GetBatch()+1), h.GetAgentId(), watch.StepName(h.GetStep()), ts(h.GetStartedAt()),
			h.GetPreviousImage(), h.GetMessage())
	}
	for _, x := range r.GetExcluded() {
		t.Row("", x.GetAgentId(), "EXCLUDED", "", "", x.GetReason())
	}
	return t.Flush()
}

func (a *app) rolloutListCommand() *cobra.Command {
	var service string
	var limit int32
	c := &cobra.Command{
		Use:   "ls",
		Short: "List rollouts, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.listRollouts(cmd, service, limit)
		},
	}
	c.Flags().StringVar(&service, "service", "", "only this service's rollouts")
	c.Flags().Int32Var(&limit, "limit", 20, "at most this many (1-200)")
	return c
}

func (a *app) listRollouts(cmd *cobra.Command, service string, limit int32) error {
	c, err := a.connect()
	if err != nil {
		return err
	}
	resp, err := call(cmd.Context(), c.Rollout.ListRollouts, &flotillav1.ListRolloutsRequest{Service: service, PageSize: limit})
	if err != nil {
		return err
	}
	if done, err := a.emit(resp); done || err != nil {
		return err
	}
	now := time.Now()
	t := output.NewTable(a.env.Stdout, "ID", "SERVICE", "IMAGE", "STATE", "CREATED", "BY", "MESSAGE")
	for _, r := range resp.GetRollouts() {
		t.Row(r.GetId(), r.GetService(), r.GetImage(), watch.StateName(r.GetState()), age(r.GetCreatedAt(), now)+" ago",
			r.GetCreatedBy(), r.GetMessage())
	}
	return t.Flush()
}

func (a *app) rolloutPauseCommand() *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "pause ROLLOUT_ID",
		Short: "Start no new batch until resumed (hosts in progress finish)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Rollout.PauseRollout, &flotillav1.PauseRolloutRequest{RolloutId: args[0], Reason: reason})
			if err != nil {
				return err
			}
			return a.rolloutChanged(resp, resp.GetRollout())
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, for the record")
	return c
}

func (a *app) rolloutResumeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "resume ROLLOUT_ID",
		Short: "Continue a paused rollout",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Rollout.ResumeRollout, &flotillav1.ResumeRolloutRequest{RolloutId: args[0]})
			if err != nil {
				return err
			}
			return a.rolloutChanged(resp, resp.GetRollout())
		},
	}
}

func (a *app) rolloutAbortCommand() *cobra.Command {
	var req flotillav1.AbortRolloutRequest
	var wf watchFlags
	c := &cobra.Command{
		Use:   "abort ROLLOUT_ID",
		Short: "Stop a rollout, with --rollback putting every changed host back",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.RolloutId = args[0]
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Rollout.AbortRollout, &req)
			if err != nil {
				return err
			}
			if err := a.rolloutChanged(resp, resp.GetRollout()); err != nil || !wf.watch {
				return err
			}
			return a.followRollout(cmd.Context(), args[0], wf.timeout)
		},
	}
	c.Flags().StringVar(&req.Reason, "reason", "", "why, for the record (kept as the rollout's message)")
	c.Flags().BoolVar(&req.Rollback, "rollback", false, "roll back every host the rollout changed")
	wf.register(c, true)
	return c
}

func (a *app) rolloutRollbackCommand() *cobra.Command {
	var req flotillav1.RollbackServiceRequest
	var wf watchFlags
	c := &cobra.Command{
		Use:   "rollback SERVICE",
		Short: "Start a rollout of SERVICE back to its previous good image (or --to a rollout's)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Service = args[0]
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Rollout.RollbackService, &req)
			if err != nil {
				return err
			}
			return a.started(cmd.Context(), resp.GetRollout(), resp, wf, false)
		},
	}
	c.Flags().StringVar(&req.ToRolloutId, "to", "", "the rollout whose image to go back to (default: the last successful one before the current)")
	c.Flags().StringVar(&req.Reason, "reason", "", "why, for the record")
	wf.register(c, true)
	return c
}

// rolloutChanged prints a rollout after a pause, resume or abort.
func (a *app) rolloutChanged(resp proto.Message, r *flotillav1.Rollout) error {
	if done, err := a.emit(resp); done || err != nil {
		return err
	}
	line := fmt.Sprintf("rollout %s %s", r.GetId(), watch.StateName(r.GetState()))
	if m := r.GetMessage(); m != "" {
		line += ": " + m
	}
	_, err := fmt.Fprintln(a.env.Stdout, line)
	return err
}
