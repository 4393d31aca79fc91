package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/exitcode"
	"flotilla.dev/cli/internal/output"
	"flotilla.dev/cli/internal/watch"
)

// watchFlags are the flags of every command that can follow a rollout.
type watchFlags struct {
	watch   bool
	timeout time.Duration
}

func (w *watchFlags) register(c *cobra.Command, withWatch bool) {
	if withWatch {
		c.Flags().BoolVarP(&w.watch, "watch", "w", false, "follow it to its end; the exit code is its final state's")
	}
	c.Flags().DurationVar(&w.timeout, "timeout", 0, "stop watching after this long (exit 6, the ID printed to re-attach); 0: no limit")
}

func (a *app) rolloutCommand() *cobra.Command {
	c := &cobra.Command{Use: "rollout", Aliases: []string{"rollouts", "deploy"}, Short: "Move a service to a new image, and follow it"}
	c.AddCommand(a.rolloutStartCommand(), a.rolloutWatchCommand(), a.rolloutGetCommand(), a.rolloutListCommand(),
		a.rolloutPauseCommand(), a.rolloutResumeCommand(), a.rolloutAbortCommand(), a.rolloutRollbackCommand())
	return c
}

func (a *app) rolloutStartCommand() *cobra.Command {
	var req flotillav1.StartRolloutRequest
	var wf watchFlags
	var sf strategyFlags
	c := &cobra.Command{
		Use:   "start SERVICE --image IMAGE",
		Short: "Start a rollout of SERVICE to IMAGE (the plan is printed; --dry-run only plans)",
		Long: `Start a rollout of SERVICE to IMAGE; the plan is printed (--dry-run only plans).

Strategy overrides: the API takes a rollout's strategy as a whole, instead
of the service's default_strategy. --strategy-file gives the whole strategy
(YAML, the API's field names); the other strategy flags (--batch-size,
--canary, --max-failures, ...) start from the service's default strategy,
or from the file's, and change only what they name.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Service = args[0]
			if req.Image == "" {
				return usage("--image: required (name:tag or name@sha256:…)")
			}
			if req.OverrideWindow && strings.TrimSpace(req.Reason) == "" {
				return usage("--reason: required with --override-window (say why the deploy windows are overridden)")
			}
			if err := a.fileStrategy(cmd.Flags(), &sf, &req); err != nil {
				return err
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			if err := a.flagStrategy(cmd.Context(), cmd.Flags(), &sf, &req); err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Rollout.StartRollout, &req)
			if err != nil {
				return err
			}
			return a.started(cmd.Context(), resp.GetRollout(), resp, wf, req.DryRun)
		},
	}
	c.Flags().StringVar(&req.Image, "image", "", "the image to deploy (name:tag or name@sha256:…)")
	c.Flags().StringVarP(&req.Selector, "selector", "l", "", "override the service's selector for this rollout")
	c.Flags().StringVar(&req.Reason, "reason", "", "why, for the record")
	c.Flags().BoolVar(&req.DryRun, "dry-run", false, "print the exact plan and change nothing")
	c.Flags().BoolVar(&req.OverrideWindow, "override-window", false,
		"start even outside the service's deploy windows and never pause at one (needs --reason; audited)")
	sf.register(c.Flags())
	wf.register(c, true)
	return c
}

// started prints a rollout just started (or planned) and, with --watch,
// follows it.
func (a *app) started(ctx context.Context, r *flotillav1.Rollout, resp proto.Message, wf watchFlags, dryRun bool) error {
	if a.format.Machine() {
		if err := output.Write(a.env.Stdout, a.format, resp); err != nil {
			return err
		}
	}
	printPlan(a.progress(), r, dryRun)
	if dryRun || !wf.watch {
		if !dryRun && !a.format.Machine() {
			fmt.Fprintf(a.env.Stdout, "follow it: flotilla rollout watch %s\n", r.GetId())
		}
		return nil
	}
	return a.followRollout(ctx, r.GetId(), wf.timeout)
}

// printPlan prints a rollout's plan: its batches and the hosts left out.
func printPlan(w io.Writer, r *flotillav1.Rollout, dryRun bool) {
	hosts := 0
	for _, b := range r.GetBatches() {
		hosts += len(b.GetAgentIds())
	}
	what := "rollout " + r.GetId()
	if dryRun {
		what = "plan (dry run, nothing started)"
	}
	fmt.Fprintf(w, "%s: %s → %s, %d hosts in %d batches\n", what, r.GetService(), r.GetImage(), hosts, len(r.GetBatches()))
	if s := r.GetStrategy(); s != nil {
		fmt.Fprintf(w, "  strategy: min healthy %s within %s, max failures %s, auto rollback %t\n",
			dur(s.GetMinHealthyTime()), dur(s.GetHealthyDeadline()), limitString(s.GetMaxFailures()), s.GetAutoRollback())
		fmt.Fprintf(w, "            %s\n", strategyLine(s))
	}
	for _, b := range r.GetBatches() {
		canary := ""
		if b.GetCanary() {
			canary = " (canary)"
		}
		fmt.Fprintf(w, "  batch %d%s: %s\n", b.GetIndex()+1, canary, strings.Join(b.GetAgentIds(), ", "))
	}
	for _, x := range r.GetExcluded() {
		fmt.Fprintf(w, "  left out: %s (%s)\n", x.GetAgentId(), x.GetReason())
	}
	if win := r.GetWindow(); win != nil {
		state := "closed"
		if win.GetOpen() {
			state = "open"
		}
		if r.GetOverrideWindow() {
			state += ", overridden"
		}
		fmt.Fprintf(w, "  deploy windows %s: %s\n", state, win.GetMessage())
	}
}

func limitString(l *flotillav1.Limit) string {
	switch k := l.GetKind().(type) {
	case *flotillav1.Limit_Count:
		return fmt.Sprint(k.Count)
	case *flotillav1.Limit_Percent:
		return fmt.Sprintf("%d%%", k.Percent)
	}
	return ""
}

func (a *app) rolloutWatchCommand() *cobra.Command {
	var wf watchFlags
	c := &cobra.Command{
		Use:   "watch ROLLOUT_ID",
		Short: "Follow a rollout to its end (at once for one already over); the exit code is its final state's",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := a.connect(); err != nil {
				return err
			}
			return a.followRollout(cmd.Context(), args[0], wf.timeout)
		},
	}
	wf.register(c, false)
	return c
}

// followRollout follows a rollout to its end, showing it, and ends with
// the exit code of its final state as the server reports it.
func (a *app) followRollout(parent context.Context, id string, timeout time.Duration) error {
	ctx, cancel := parent, context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(parent, timeout)
	}
	defer cancel()
	// The plan, for the view. A control plane that cannot be reached at
	// all ends the command here (exit 4); once it answered, drops are
	// re-attached.
	got, err := call(ctx, a.client.Rollout.GetRollout, &flotillav1.GetRolloutRequest{RolloutId: id})
	if err != nil {
		return a.watchEnded(parent, ctx, id, err, timeout)
	}
	model := watch.NewRolloutModel(got.GetRollout())
	view := &lockedView{v: a.rolloutView(model)}
	defer view.Close()
	f := &watch.RolloutFollower{API: a.client.Rollout, ID: id}
	f.OnEvent = func(ev *flotillav1.RolloutEvent) {
		view.mu.Lock()
		defer view.mu.Unlock()
		model.Apply(ev)
		if a.format.Machine() {
			_ = output.Write(a.env.Stdout, a.format, &flotillav1.WatchRolloutResponse{Event: ev})
		}
		view.v.Event(ev)
	}
	f.OnReattach = func(n int, err error) {
		why := "the stream ended early"
		if err != nil {
			why = ErrorLine(err)
		}
		view.Note(fmt.Sprintf("watch stream dropped (%s); re-attaching after event %d (attempt %d)", why, f.LastSequence(), n))
	}
	stop := view.tick()
	final, err := f.Run(ctx)
	stop()
	if err != nil {
		return a.watchEnded(parent, ctx, id, err, timeout)
	}
	return a.rolloutEnded(final, model)
}

// rolloutEnded prints the rollout's final state (and in machine formats
// the rollout itself) and ends with its exit code; a rollout that did not
// succeed names the gate that failed and its evidence.
func (a *app) rolloutEnded(final *flotillav1.Rollout, model *watch.RolloutModel) error {
	if a.format.Machine() {
		if err := output.Write(a.env.Stdout, a.format, &flotillav1.GetRolloutResponse{Rollout: final}); err != nil {
			return err
		}
	}
	code := exitcode.ForRollout(final.GetState())
	w := a.progress()
	line := fmt.Sprintf("rollout %s %s", final.GetId(), watch.StateName(final.GetState()))
	if m := final.GetMessage(); m != "" {
		line += ": " + m
	}
	fmt.Fprintln(w, line)
	if code != exitcode.OK {
		for _, l := range model.FailureLines() {
			fmt.Fprintln(w, l)
		}
		fmt.Fprintf(w, "exit %d (%s)\n", int(code), code)
	}
	return exit(code)
}

// watchEnded turns the end of a watch before the rollout's into an exit:
// the timeout and an interrupt print the ID to re-attach.
func (a *app) watchEnded(parent, ctx context.Context, id string, err error, timeout time.Duration) error {
	switch {
	case parent.Err() != nil:
		fmt.Fprintf(a.env.Stderr, "stopped watching; rollout %s goes on: flotilla rollout watch %s\n", id, id)
		return exit(exitcode.Interrupted)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		fmt.Fprintf(a.env.Stderr, "rollout %s is still running after --timeout %s; re-attach: flotilla rollout watch %s\n", id, timeout, id)
		return exit(exitcode.Timeout)
	case exitcode.ForError(err) == exitcode.Transport:
		fmt.Fprintf(a.env.Stderr, "flotilla: %s\nthe rollout's state is unknown, not failed; re-attach: flotilla rollout watch %s\n", ErrorLine(err), id)
		return exit(exitcode.Transport)
	}
	return err
}

func (a *app) rolloutView(m *watch.RolloutModel) watch.RolloutView {
	w := a.progress()
	if tty, width := a.env.Terminal(w); tty {
		return &watch.LiveRolloutView{W: w, Model: m, Width: width}
	}
	return &watch.PlainRolloutView{W: w, Model: m}
}

// lockedView serializes a view's calls from the follower and the ticker.
type lockedView struct {
	mu sync.Mutex
	v  watch.RolloutView
}

func (l *lockedView) Note(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.v.Note(s)
}

func (l *lockedView) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.v.Close()
}

// tick calls the view's Tick every second until the returned stop.
func (l *lockedView) tick() (stop func()) {
	return everySecond(func(now time.Time) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.v.Tick(now)
	})
}

// everySecond calls fn every second until the returned stop, which may be
// called more than once.
func everySecond(fn func(time.Time)) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				fn(now)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-finished }) }
}
