package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

const (
	// oldSuffix names the old container while its replacement starts.
	oldSuffix = ".flotilla-old"
	// maxStopTimeout bounds restart.stop_timeout.
	maxStopTimeout = 10 * time.Minute
)

// restartRequest is a validated RestartCommand.
type restartRequest struct {
	container   string
	image       *imageRef // nil for a plain restart
	stopTimeout time.Duration
}

// parseRestart checks a RestartCommand's grammar and guard rails that need
// no engine: the container name and the image's registry.
func (e *Executor) parseRestart(c *flotillav1.RestartCommand) (restartRequest, error) {
	req := restartRequest{container: c.GetContainer(), stopTimeout: e.cfg.StopTimeout}
	if req.container == "" {
		return req, executor.Reject("restart.container: is required")
	}
	if err := validateContainerName(req.container); err != nil {
		return req, executor.Reject("restart.container: %v", err)
	}
	// An unset or zero timeout means the default: a zero that kills the
	// application at once is never what a caller who forgot the field wants.
	if st := c.GetStopTimeout(); st != nil {
		if err := st.CheckValid(); err != nil {
			return req, executor.Reject("restart.stop_timeout: %v", err)
		}
		switch d := st.AsDuration(); {
		case d < 0 || d > maxStopTimeout:
			return req, executor.Reject("restart.stop_timeout: must be from 0s to %v, got %v", maxStopTimeout, d)
		case d > 0:
			req.stopTimeout = d
		}
	}
	if c.GetImage() != "" {
		ref, err := e.validImage("restart.image", c.GetImage())
		if err != nil {
			return req, err
		}
		req.image = &ref
	}
	return req, nil
}

// restart restarts or re-creates a managed container, one command per
// container name at a time. The command's name is translated through
// docker.container_names first: the guard rails, the lock and the
// procedure all apply to the local container, while the result names the
// container as the command did.
func (e *Executor) restart(ctx context.Context, req restartRequest, progress executor.Progress) (*flotillav1.RestartResult, error) {
	requested := req.container
	req.container = e.localName(requested)
	if req.container != requested {
		progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("container %s is %s on this host (docker.container_names)", requested, req.container)})
	}
	unlock, err := e.locks.lock(ctx, req.container)
	if err != nil {
		return nil, err
	}
	defer unlock()
	old, err := e.managedContainer(ctx, req.container)
	if err != nil {
		return nil, err
	}
	prev, err := previousConfigJSON(old.Raw)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", req.container, err)
	}
	res := &flotillav1.RestartResult{
		Container:           requested,
		PreviousContainerId: old.Container.ID,
		PreviousImageId:     old.Container.Image,
		PreviousConfigJson:  prev,
	}
	if old.Container.Config != nil {
		res.PreviousImage = old.Container.Config.Image
	}
	if req.image == nil {
		return e.plainRestart(ctx, req, res, progress)
	}
	return e.replace(ctx, req, old, res, progress)
}

// plainRestart restarts the container in place and confirms it stays up.
func (e *Executor) plainRestart(ctx context.Context, req restartRequest, res *flotillav1.RestartResult, progress executor.Progress) (*flotillav1.RestartResult, error) {
	name, id := req.container, res.PreviousContainerId
	progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("restarting container %s (stop timeout %v)", name, req.stopTimeout)})
	secs := seconds(req.stopTimeout)
	if _, err := e.docker.ContainerRestart(ctx, id, client.ContainerRestartOptions{Timeout: &secs}); err != nil {
		return nil, engineError(ctx, err, "restart container %s", name)
	}
	progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("container %s restarted; checking that it stays running for %v", name, e.cfg.StartGracePeriod)})
	if err := e.confirmRunning(ctx, id, "container "+name, e.cfg.StartGracePeriod); err != nil {
		return nil, fmt.Errorf("restart of container %s failed: %w%s", name, err, e.logsNote(ctx, id, "the container"))
	}
	res.ContainerId, res.Image, res.ImageId = id, res.PreviousImage, res.PreviousImageId
	e.log.Info("container restarted", zap.String("container", name), zap.String("id", shortID(id)))
	return res, nil
}

// logsNote is the last log lines of a container as a message suffix.
// It runs on a context of its own: the logs explain a failure, which may
// be that ctx ended.
func (e *Executor) logsNote(ctx context.Context, id, what string) string {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	tty := false
	if c, err := e.docker.ContainerInspect(lctx, id, client.ContainerInspectOptions{}); err == nil && c.Container.Config != nil {
		tty = c.Container.Config.Tty
	}
	if tail := e.logTail(lctx, id, tty); tail != "" {
		return fmt.Sprintf(". Last log lines of %s:\n%s", what, tail)
	}
	return fmt.Sprintf(". No log output from %s", what)
}

// previousConfigJSON keeps the parts of the raw inspect document that a
// rollback needs, exactly as the engine reported them, in the shape of the
// inspect document: {"Config", "HostConfig", "NetworkSettings":{"Networks"}}.
func previousConfigJSON(raw json.RawMessage) ([]byte, error) {
	var doc struct {
		Config          json.RawMessage
		HostConfig      json.RawMessage
		NetworkSettings struct {
			Networks json.RawMessage
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("decode the engine's inspect document: %w", err)
	}
	return json.Marshal(doc)
}

// seconds is d in whole seconds, rounded up, as the engine takes timeouts.
func seconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}
