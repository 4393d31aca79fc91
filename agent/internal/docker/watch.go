package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// notRunningError says that a container did not start or did not stay up.
type notRunningError struct {
	What     string // "the new container web (3f2a…)"
	State    string // Docker's status: exited, restarting, running…
	ExitCode int
	Detail   string // the engine's error, "OOM killed", "unhealthy", …
}

func (e *notRunningError) Error() string {
	var msg string
	switch e.State {
	case "exited", "dead":
		msg = fmt.Sprintf("%s exited (exit code %d)", e.What, e.ExitCode)
	case "restarting":
		msg = fmt.Sprintf("%s is restarting (last exit code %d)", e.What, e.ExitCode)
	case "restarted":
		msg = fmt.Sprintf("%s exited and was restarted by its restart policy", e.What)
	default:
		msg = fmt.Sprintf("%s is %s", e.What, e.State)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// confirmRunning checks that container id is running and stays running,
// without a restart, for grace. It polls the engine, which catches exits,
// restart loops (a restart policy makes a crash look like "restarting")
// and a healthcheck gone unhealthy. what names the container in errors.
func (e *Executor) confirmRunning(ctx context.Context, id, what string, grace time.Duration) error {
	first, err := e.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return engineError(ctx, err, "inspect %s after its start", what)
	}
	if err := runningState(what, first.Container, first.Container); err != nil {
		return err
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(e.pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to stay running: %w", what, ctx.Err())
		case <-deadline.C:
			return nil
		case <-tick.C:
		}
		cur, err := e.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return engineError(ctx, err, "inspect %s while it starts", what)
		}
		if err := runningState(what, first.Container, cur.Container); err != nil {
			return err
		}
	}
}

// runningState is nil when cur is running as the same process as first.
func runningState(what string, first, cur container.InspectResponse) error {
	s := cur.State
	if s == nil {
		return &notRunningError{What: what, State: "in an unknown state"}
	}
	fail := func(state, detail string) error {
		if s.OOMKilled {
			detail = strings.TrimPrefix(detail+"; OOM killed", "; ")
		}
		return &notRunningError{What: what, State: state, ExitCode: s.ExitCode, Detail: detail}
	}
	switch {
	case !s.Running || s.Restarting:
		return fail(string(s.Status), s.Error)
	case cur.RestartCount != first.RestartCount || s.StartedAt != first.State.StartedAt:
		return fail("restarted", "")
	case s.Health != nil && s.Health.Status == container.Unhealthy:
		return fail(string(s.Status), "its healthcheck reports unhealthy")
	}
	return nil
}

// logTailLines and maxLogTail bound the log excerpt of a failure message.
const (
	logTailLines = 20
	maxLogTail   = 2048
)

// logTail returns the last lines of a container's output (stdout and
// stderr), for failure messages; "" when there is none or it cannot be read.
func (e *Executor) logTail(ctx context.Context, id string, tty bool) string {
	rc, err := e.docker.ContainerLogs(ctx, id, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(logTailLines),
	})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var buf bytes.Buffer
	limited := io.LimitReader(rc, 64<<10)
	if tty {
		_, err = io.Copy(&buf, limited)
	} else {
		_, err = stdcopy.StdCopy(&buf, &buf, limited)
	}
	if err != nil && buf.Len() == 0 {
		return ""
	}
	out := strings.TrimSpace(buf.String())
	if len(out) > maxLogTail {
		out = "…" + strings.ToValidUTF8(out[len(out)-maxLogTail:], "")
	}
	return out
}
