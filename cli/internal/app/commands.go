package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/exitcode"
	"flotilla.dev/cli/internal/output"
	"flotilla.dev/cli/internal/watch"
)

// runFlags are the flags of `cmd run`.
type runFlags struct {
	selector       string
	agents         []string
	maxConcurrency string
	maxErrors      string
	hostTimeout    time.Duration
	reason         string
	wf             watchFlags
}

func (a *app) cmdCommand() *cobra.Command {
	c := &cobra.Command{Use: "cmd", Aliases: []string{"command", "commands"}, Short: "Run a command on a set of hosts, and follow it"}
	run := &cobra.Command{Use: "run", Short: "Run pull, restart, drain, undrain or a backup kind (backup, base-backup, prune, restore, drill) on the hosts chosen by --selector or --agent"}
	var rf runFlags
	pf := run.PersistentFlags()
	pf.StringVarP(&rf.selector, "selector", "l", "", `the hosts by label selector, e.g. "env=prod,role=web"`)
	pf.StringSliceVar(&rf.agents, "agent", nil, "the hosts by agent ID (repeatable)")
	pf.StringVar(&rf.maxConcurrency, "max-concurrency", "", "hosts at once: a count (2) or a percentage (25%); default all")
	pf.StringVar(&rf.maxErrors, "max-errors", "", "failed hosts after which nothing new starts: a count or a percentage")
	pf.DurationVar(&rf.hostTimeout, "host-timeout", 0, "per-host time limit (default by kind)")
	pf.StringVar(&rf.reason, "reason", "", "why, for the record")
	pf.BoolVarP(&rf.wf.watch, "watch", "w", false, "follow it to its end; the exit code is its final state's")
	pf.DurationVar(&rf.wf.timeout, "timeout", 0, "stop watching after this long (exit 6); 0: no limit")
	kinds := []struct {
		use, short string
		args       int
		spec       func([]string) *flotillav1.CommandSpec
	}{
		{"pull IMAGE", "Pull an image", 1, func(x []string) *flotillav1.CommandSpec {
			return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: x[0]}}}
		}},
		{"restart CONTAINER [IMAGE]", "Re-create a managed container, optionally with a new image", -1, func(x []string) *flotillav1.CommandSpec {
			r := &flotillav1.RestartCommand{Container: x[0]}
			if len(x) > 1 {
				r.Image = x[1]
			}
			return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{Restart: r}}
		}},
		{"drain UPSTREAM SERVER", "Mark a server (host:port) down in an Nginx upstream", 2, func(x []string) *flotillav1.CommandSpec {
			return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drain{Drain: &flotillav1.DrainCommand{Upstream: x[0], Server: x[1]}}}
		}},
		{"undrain UPSTREAM SERVER", "Put a drained server back into its upstream", 2, func(x []string) *flotillav1.CommandSpec {
			return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Undrain{Undrain: &flotillav1.UndrainCommand{Upstream: x[0], Server: x[1]}}}
		}},
	}
	for _, k := range kinds {
		args := cobra.ExactArgs(k.args)
		if k.args < 0 {
			args = cobra.RangeArgs(1, 2)
		}
		run.AddCommand(&cobra.Command{Use: k.use, Short: k.short, Args: args, RunE: func(cmd *cobra.Command, x []string) error {
			return a.runCommand(cmd.Context(), k.spec(x), rf)
		}})
	}
	run.AddCommand(a.backupKindCommands(&rf)...)
	c.AddCommand(run, a.cmdWatchCommand(), a.cmdCancelCommand(), a.cmdListCommand(), a.cmdGetCommand())
	return c
}

// parseLimit parses "3" or "25%".
func parseLimit(flag, s string) (*flotillav1.Limit, error) {
	if s == "" {
		return nil, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, usage("%s %q: want a count (2) or a percentage (25%%)", flag, s)
		}
		return &flotillav1.Limit{Kind: &flotillav1.Limit_Percent{Percent: int32(n)}}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return nil, usage("%s %q: want a count (2) or a percentage (25%%)", flag, s)
	}
	return &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: int32(n)}}, nil
}

func (a *app) runCommand(ctx context.Context, spec *flotillav1.CommandSpec, rf runFlags) error {
	req := &flotillav1.RunCommandRequest{Spec: spec, Selector: rf.selector, AgentIds: rf.agents, Reason: rf.reason}
	var err error
	if req.MaxConcurrency, err = parseLimit("--max-concurrency", rf.maxConcurrency); err != nil {
		return err
	}
	if req.MaxErrors, err = parseLimit("--max-errors", rf.maxErrors); err != nil {
		return err
	}
	if rf.hostTimeout > 0 {
		req.Timeout = durationpb.New(rf.hostTimeout)
	}
	if rf.selector == "" && len(rf.agents) == 0 {
		return usage("--selector or --agent: required: which hosts")
	}
	c, err := a.connect()
	if err != nil {
		return err
	}
	resp, err := call(ctx, c.Fleet.RunCommand, req)
	if err != nil {
		return err
	}
	if done, err := a.emit(resp); err != nil {
		return err
	} else if !done {
		fmt.Fprintf(a.env.Stdout, "command %s started on %d hosts\n", resp.GetCommand().GetId(), hostCount(resp.GetCommand()))
	}
	if !rf.wf.watch {
		if !a.format.Machine() {
			fmt.Fprintf(a.env.Stdout, "follow it: flotilla cmd watch %s\n", resp.GetCommand().GetId())
		}
		return nil
	}
	return a.followCommand(ctx, resp.GetCommand().GetId(), rf.wf.timeout)
}

func hostCount(c *flotillav1.FleetCommand) int {
	if n := len(c.GetHosts()); n > 0 {
		return n
	}
	n := 0
	for _, v := range c.GetSummary() {
		n += int(v)
	}
	return n
}

func (a *app) cmdWatchCommand() *cobra.Command {
	var wf watchFlags
	c := &cobra.Command{
		Use:   "watch COMMAND_ID",
		Short: "Follow a fleet command to its end; the exit code is its final state's",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := a.connect(); err != nil {
				return err
			}
			return a.followCommand(cmd.Context(), args[0], wf.timeout)
		},
	}
	wf.register(c, false)
	return c
}

// followCommand follows a fleet command, one line per host event (the
// messages themselves with -o json), and ends with its final state's code.
func (a *app) followCommand(parent context.Context, id string, timeout time.Duration) error {
	ctx, cancel := parent, context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(parent, timeout)
	}
	defer cancel()
	w := a.progress()
	var mu sync.Mutex
	view := a.commandView()
	f := &watch.CommandFollower{API: a.client.Fleet, ID: id}
	f.OnMessage = func(m *flotillav1.WatchCommandResponse) {
		mu.Lock()
		defer mu.Unlock()
		if a.format.Machine() {
			_ = output.Write(a.env.Stdout, a.format, m)
		}
		view.Message(m)
	}
	f.OnReattach = func(n int, err error) {
		why := "the stream ended early"
		if err != nil {
			why = ErrorLine(err)
		}
		mu.Lock()
		defer mu.Unlock()
		view.Note(fmt.Sprintf("watch stream dropped (%s); re-attaching (attempt %d)", why, n))
	}
	stop := everySecond(func(now time.Time) {
		mu.Lock()
		defer mu.Unlock()
		view.Tick(now)
	})
	defer stop()
	final, err := f.Run(ctx)
	stop()
	if err != nil {
		switch {
		case parent.Err() != nil:
			fmt.Fprintf(a.env.Stderr, "stopped watching; command %s goes on: flotilla cmd watch %s\n", id, id)
			return exit(exitcode.Interrupted)
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			fmt.Fprintf(a.env.Stderr, "command %s is still running after --timeout %s; re-attach: flotilla cmd watch %s\n", id, timeout, id)
			return exit(exitcode.Timeout)
		}
		return err
	}
	code := exitcode.ForCommand(final.GetState())
	for _, h := range final.GetHosts() {
		if h.GetState() != flotillav1.CommandState_COMMAND_STATE_SUCCEEDED && code != exitcode.OK {
			fmt.Fprintf(w, "host %s %s: %s\n", h.GetAgentId(), enumName(h.GetState(), "COMMAND_STATE_"), h.GetMessage())
		}
	}
	if code != exitcode.OK {
		fmt.Fprintf(w, "exit %d (%s)\n", int(code), code)
	}
	return exit(code)
}

func (a *app) cmdCancelCommand() *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "cancel COMMAND_ID",
		Short: "Stop a fleet command: hosts not started are skipped, running ones cancelled",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Fleet.CancelCommand, &flotillav1.CancelCommandRequest{CommandId: args[0], Reason: reason})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.env.Stdout, "command %s %s\n", args[0], enumName(resp.GetCommand().GetState(), "FLEET_COMMAND_STATE_"))
			return err
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, for the record")
	return c
}

func (a *app) cmdListCommand() *cobra.Command {
	var limit int32
	c := &cobra.Command{
		Use:   "ls",
		Short: "List fleet commands, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Fleet.ListCommands, &flotillav1.ListCommandsRequest{PageSize: limit})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			now := time.Now()
			t := output.NewTable(a.env.Stdout, "ID", "KIND", "STATE", "HOSTS", "CREATED", "BY", "REASON")
			for _, fc := range resp.GetCommands() {
				t.Row(fc.GetId(), specKind(fc.GetSpec()), enumName(fc.GetState(), "FLEET_COMMAND_STATE_"),
					summary(fc.GetSummary()), age(fc.GetCreatedAt(), now)+" ago", fc.GetCreatedBy(), fc.GetReason())
			}
			return t.Flush()
		},
	}
	c.Flags().Int32Var(&limit, "limit", 50, "at most this many (1-500)")
	return c
}

func (a *app) cmdGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get COMMAND_ID",
		Short: "Show a fleet command with every host's state and result",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Fleet.GetCommand, &flotillav1.GetCommandRequest{CommandId: args[0]})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			fc := resp.GetCommand()
			var k kv
			k.add("id", fc.GetId())
			k.add("kind", specKind(fc.GetSpec()))
			k.add("state", enumName(fc.GetState(), "FLEET_COMMAND_STATE_"))
			k.add("selector", fc.GetSelector())
			k.add("reason", fc.GetReason())
			k.add("created by", fc.GetCreatedBy())
			k.add("created", ts(fc.GetCreatedAt()))
			k.add("finished", ts(fc.GetFinishedAt()))
			fmt.Fprint(a.env.Stdout, k.String())
			t := output.NewTable(a.env.Stdout, "HOST", "STATE", "STARTED", "FINISHED", "MESSAGE")
			for _, h := range fc.GetHosts() {
				t.Row(h.GetAgentId(), enumName(h.GetState(), "COMMAND_STATE_"), ts(h.GetStartedAt()), ts(h.GetFinishedAt()), h.GetMessage())
			}
			return t.Flush()
		},
	}
}

// specKind names a command's kind.
func specKind(s *flotillav1.CommandSpec) string {
	switch s.GetKind().(type) {
	case *flotillav1.CommandSpec_Pull:
		return "pull"
	case *flotillav1.CommandSpec_Restart:
		return "restart"
	case *flotillav1.CommandSpec_Backup:
		return "backup"
	case *flotillav1.CommandSpec_Drain:
		return "drain"
	case *flotillav1.CommandSpec_Undrain:
		return "undrain"
	case *flotillav1.CommandSpec_BaseBackup:
		return "base-backup"
	case *flotillav1.CommandSpec_Prune:
		return "prune"
	case *flotillav1.CommandSpec_Restore:
		return "restore"
	case *flotillav1.CommandSpec_Drill:
		return "drill"
	}
	return ""
}

// commandView is the live view in a terminal, plain lines elsewhere.
func (a *app) commandView() watch.CommandView {
	w := a.progress()
	if tty, width := a.env.Terminal(w); tty {
		return &watch.LiveCommandView{W: w, Width: width, Model: watch.NewCommandModel()}
	}
	return &watch.PlainCommandView{W: w}
}
