package docker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// replacement re-creates one container with a new image. The procedure
// never loses the old container: it is stopped and set aside under
// <name>.flotilla-old, and only removed once the new one has stayed up for
// the grace period. Any failure after the stop puts it back.
type replacement struct {
	e        *Executor
	name     string
	aside    string // the old container's name while set aside
	oldID    string
	image    string
	stop     time.Duration
	log      *zap.Logger
	progress executor.Progress

	// What has been done, for the rollback.
	stopAttempted, stopped, renamed bool
	newID                           string
}

// replace re-creates the container of old with req's image.
func (e *Executor) replace(ctx context.Context, req restartRequest, old client.ContainerInspectResult, res *flotillav1.RestartResult, progress executor.Progress) (*flotillav1.RestartResult, error) {
	ref := *req.image
	imageID, present, err := e.imagePresent(ctx, ref)
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, fmt.Errorf("image %s is not present; pull it first", ref.raw)
	}
	if err := e.checkReplaceable(ctx, old); err != nil {
		return nil, err
	}
	plan := planRecreate(old.Container, e.imageConfig(ctx, old.Container.Image), ref.raw)
	r := &replacement{
		e: e, name: req.container, aside: req.container + oldSuffix, oldID: old.Container.ID,
		image: ref.raw, stop: req.stopTimeout, progress: progress,
		log: e.log.With(zap.String("container", req.container), zap.String("image", ref.raw)),
	}
	if err := r.run(ctx, plan); err != nil {
		return nil, r.rollback(ctx, err)
	}
	r.removeOld(ctx)

	res.ContainerId, res.Image, res.ImageId = r.newID, ref.raw, imageID
	if c, err := e.docker.ContainerInspect(context.WithoutCancel(ctx), r.newID, client.ContainerInspectOptions{}); err == nil {
		res.ImageId = c.Container.Image // what it runs, should the tag have moved since
	}
	r.log.Info("container re-created", zap.String("id", shortID(r.newID)), zap.String("previous_id", shortID(r.oldID)),
		zap.String("previous_image", res.PreviousImage))
	progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("container %s runs %s", r.name, ref.raw)})
	return res, nil
}

// checkReplaceable refuses what the procedure cannot do safely.
func (e *Executor) checkReplaceable(ctx context.Context, old client.ContainerInspectResult) error {
	name := nameOf(old)
	if hc := old.Container.HostConfig; hc != nil && hc.AutoRemove {
		return fmt.Errorf("container %s was started with --rm (AutoRemove): the engine would delete it when it stops, so a failed re-create could not restore it; re-create it without --rm", name)
	}
	aside := name + oldSuffix
	if _, exists, err := e.inspectByName(ctx, aside); err != nil {
		return err
	} else if exists {
		return fmt.Errorf("container %s is left over from an interrupted restart of %s; check which of the two should run, remove the other (docker rm), then retry", aside, name)
	}
	return nil
}

// nameOf is the container's name from its inspect document.
func nameOf(c client.ContainerInspectResult) string { return strings.TrimPrefix(c.Container.Name, "/") }

// imageConfig is the configuration of the image a container was created
// from, or nil when the engine no longer has it.
func (e *Executor) imageConfig(ctx context.Context, imageID string) *dockerspec.DockerOCIImageConfig {
	img, err := e.docker.ImageInspect(ctx, imageID)
	if err != nil {
		e.log.Warn("cannot inspect the old image; the new container keeps all of the old one's settings, image defaults included",
			zap.String("image_id", imageID), zap.Error(err))
		return nil
	}
	return img.Config
}

// run does the procedure up to a confirmed new container.
func (r *replacement) run(ctx context.Context, plan createPlan) error {
	d := r.e.docker
	r.report("stopping container %s (stop timeout %v)", r.name, r.stop)
	secs := seconds(r.stop)
	if err := ctx.Err(); err != nil {
		return err // nothing touched yet
	}
	r.stopAttempted = true
	if _, err := d.ContainerStop(ctx, r.oldID, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		return engineError(ctx, err, "stop the old container")
	}
	r.stopped = true
	if _, err := d.ContainerRename(ctx, r.oldID, client.ContainerRenameOptions{NewName: r.aside}); err != nil {
		return engineError(ctx, err, "rename the old container to %s", r.aside)
	}
	r.renamed = true
	r.report("creating container %s from %s", r.name, r.image)
	// The new container starts without its restart policy, which it gets
	// once confirmed: a crash must leave it exited with its exit code for
	// the rollback to report, not restarting in a loop.
	host := *plan.host
	host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyDisabled}
	created, err := d.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: r.name, Config: plan.config, HostConfig: &host, NetworkingConfig: plan.networking,
	})
	if err != nil {
		return engineError(ctx, err, "create the new container")
	}
	r.newID = created.ID
	for _, w := range created.Warnings {
		r.log.Warn("engine warning on create", zap.String("warning", w))
	}
	for _, net := range slices.Sorted(maps.Keys(plan.extra)) {
		if _, err := d.NetworkConnect(ctx, net, client.NetworkConnectOptions{Container: r.newID, EndpointConfig: plan.extra[net]}); err != nil {
			return engineError(ctx, err, "connect the new container to network %s", net)
		}
	}
	r.report("starting container %s", r.name)
	if _, err := d.ContainerStart(ctx, r.newID, client.ContainerStartOptions{}); err != nil {
		return engineError(ctx, err, "start the new container")
	}
	r.report("container %s started; checking that it stays running for %v", r.name, r.e.cfg.StartGracePeriod)
	what := fmt.Sprintf("the new container %s (%s)", r.name, shortID(r.newID))
	if err := r.e.confirmRunning(ctx, r.newID, what, r.e.cfg.StartGracePeriod); err != nil {
		return err
	}
	if policy := plan.host.RestartPolicy; policy.Name != "" && !policy.IsNone() {
		if _, err := d.ContainerUpdate(ctx, r.newID, client.ContainerUpdateOptions{RestartPolicy: &policy}); err != nil {
			return engineError(ctx, err, "give the new container its restart policy %q", policy.Name)
		}
	}
	return nil
}

// restoreBudget bounds the rollback, which runs on even when the
// command's context has ended: a stop may take the stop timeout again.
func (r *replacement) restoreBudget() time.Duration { return r.stop + time.Minute }

// rollback removes the new container and brings the old one back under
// its name, running. It runs to completion on a context of its own, so a
// cancelled or timed-out command never leaves the host without its
// container. The returned error says why the restart failed and what
// state the host is in; it wraps cause.
func (r *replacement) rollback(ctx context.Context, cause error) error {
	if !r.stopAttempted {
		return fmt.Errorf("restart of %s with %s failed before anything changed: %w", r.name, r.image, cause)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.restoreBudget())
	defer cancel()
	r.log.Warn("restart failed; restoring the old container", zap.Error(cause))
	r.report("restart failed; restoring the old container %s", r.name)

	var logs string
	if r.newID != "" {
		logs = r.e.logsNote(rctx, r.newID, "the new container")
	}
	if err := r.restore(rctx); err != nil {
		r.log.Error("restoring the old container failed", zap.Error(err))
		return fmt.Errorf("restart of %s with %s failed: %w; restoring the old container FAILED: %v (it is %s; rename and start it by hand)%s",
			r.name, r.image, cause, err, r.currentOldName(), logs)
	}
	return fmt.Errorf("restart of %s with %s failed: %w; the old container was restored and is running%s", r.name, r.image, cause, logs)
}

// restore undoes run's steps in reverse.
func (r *replacement) restore(ctx context.Context) error {
	d := r.e.docker
	if r.newID != "" {
		if _, err := d.ContainerRemove(ctx, r.newID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove the new container %s: %w", shortID(r.newID), err)
		}
		r.newID = ""
	}
	if !r.stopped {
		// The stop was interrupted: let it finish so that the start below
		// does not race a container that is still going down.
		secs := seconds(r.stop)
		if _, err := d.ContainerStop(ctx, r.oldID, client.ContainerStopOptions{Timeout: &secs}); err != nil {
			return fmt.Errorf("settle the interrupted stop: %w", err)
		}
	}
	if r.renamed {
		if _, err := d.ContainerRename(ctx, r.oldID, client.ContainerRenameOptions{NewName: r.name}); err != nil {
			return fmt.Errorf("rename %s back to %s: %w", r.aside, r.name, err)
		}
		r.renamed = false
	}
	if _, err := d.ContainerStart(ctx, r.oldID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start the old container: %w", err)
	}
	c, err := d.ContainerInspect(ctx, r.oldID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect the old container after its start: %w", err)
	}
	if c.Container.State == nil || !c.Container.State.Running {
		return errors.New("the old container does not run after its start")
	}
	return nil
}

func (r *replacement) currentOldName() string {
	if r.renamed {
		return r.aside
	}
	return r.name
}

// removeOld removes the old container once the new one is confirmed. The
// restart has succeeded by then, so this runs even if ctx has ended, and a
// failure only leaves the stopped copy behind (which the next restart of
// the container reports).
func (r *replacement) removeOld(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, err := r.e.docker.ContainerRemove(rctx, r.oldID, client.ContainerRemoveOptions{}); err != nil {
		r.log.Error("the new container runs, but removing the old one failed; remove it by hand",
			zap.String("old", r.aside), zap.Error(err))
	}
}

func (r *replacement) report(format string, args ...any) {
	r.progress(&flotillav1.CommandProgress{Message: fmt.Sprintf(format, args...)})
}
