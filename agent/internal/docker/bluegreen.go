package docker

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// trio is a managed container and its blue-green companions on this host:
// the candidate "<name>.flotilla-next" and the previous container
// "<name>.flotilla-previous". An ID is "" when the container is absent.
type trio struct {
	name                 string
	live, next, previous string
}

func (t trio) nextName() string     { return t.name + nextSuffix }
func (t trio) previousName() string { return t.name + previousSuffix }

// lookTrio finds a container's companions and applies the managed guard
// rail to the live container (or, when it is absent, the previous one).
func (e *Executor) lookTrio(ctx context.Context, name string) (trio, error) {
	t := trio{name: name}
	for _, c := range []struct {
		name string
		id   *string
	}{{name, &t.live}, {t.nextName(), &t.next}, {t.previousName(), &t.previous}} {
		res, ok, err := e.inspectByName(ctx, c.name)
		if err != nil {
			return t, err
		}
		if !ok {
			continue
		}
		*c.id = res.Container.ID
		if c.name == name || (t.live == "" && c.name == t.previousName()) {
			var labels map[string]string
			if res.Container.Config != nil {
				labels = res.Container.Config.Labels
			}
			if !e.isManaged(name, labels) {
				return t, executor.Reject("container %s is not managed by the agent: it has no label %s=%s and is not in docker.managed_containers",
					name, e.labelKey, e.labelValue)
			}
		}
	}
	if t.live == "" && t.previous == "" {
		return t, fmt.Errorf("container %s does not exist on this host", name)
	}
	return t, nil
}

// blueGreen runs a BlueGreenCommand's action on the container called name
// (the command's name, translated by docker.container_names). An action
// done already succeeds without a change.
func (e *Executor) blueGreen(ctx context.Context, name string, action flotillav1.BlueGreenAction, progress executor.Progress) error {
	local := e.localName(name)
	unlock, err := e.locks.lock(ctx, local)
	if err != nil {
		return err
	}
	defer unlock()
	t, err := e.lookTrio(ctx, local)
	if err != nil {
		return err
	}
	log := e.log.With(zap.String("container", local), zap.String("action", action.String()))
	switch action {
	case flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_PROMOTE:
		err = e.promote(ctx, t, progress)
	case flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_REPLACE:
		if err = e.promote(ctx, t, progress); err == nil {
			t, err = e.lookTrio(ctx, local)
		}
		if err == nil {
			err = e.removeCompanion(ctx, t.previous, t.previousName(), progress)
		}
	case flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_REVERT:
		err = e.revert(ctx, t, progress)
	case flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_RETIRE:
		err = e.removeCompanion(ctx, t.previous, t.previousName(), progress)
	case flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_DISCARD:
		err = e.removeCompanion(ctx, t.next, t.nextName(), progress)
	default:
		return executor.Reject("blue_green.action: %d is not an action", action)
	}
	if _, lerr := e.ManagedContainers(ctx); lerr != nil { // HealthPort follows the live container at once
		log.Warn("listing the containers after the action failed; the health port follows at the next heartbeat", zap.Error(lerr))
	}
	if err != nil {
		log.Warn("blue-green action failed", zap.Error(err))
		return err
	}
	log.Info("blue-green action done", zap.Int("health_port", e.HealthPort()))
	return nil
}

// promote makes the live container the previous one and gives the
// candidate its name; both keep running.
func (e *Executor) promote(ctx context.Context, t trio, progress executor.Progress) error {
	switch {
	case t.next == "" && t.previous != "" && t.live != "":
		progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("%s was promoted already", t.name)})
		return nil
	case t.next == "":
		return fmt.Errorf("container %s has no candidate %s to promote", t.name, t.nextName())
	case t.previous != "":
		return fmt.Errorf("container %s still exists (kept by an earlier rollout); remove it before a promotion", t.previousName())
	}
	progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("renaming %s to %s and %s to %s", t.name, t.previousName(), t.nextName(), t.name)})
	if err := e.rename(ctx, t.live, t.previousName()); err != nil {
		return err
	}
	if err := e.rename(ctx, t.next, t.name); err != nil {
		if back := e.rename(context.WithoutCancel(ctx), t.live, t.name); back != nil {
			return fmt.Errorf("%w; renaming %s back to %s failed too (%v): rename it by hand", err, t.previousName(), t.name, back)
		}
		return fmt.Errorf("%w; %s keeps its name", err, t.name)
	}
	return nil
}

// revert gives the previous container its name back and removes the one
// that had it; without a previous container, a candidate that was never
// promoted is removed.
func (e *Executor) revert(ctx context.Context, t trio, progress executor.Progress) error {
	if t.previous == "" {
		return e.removeCompanion(ctx, t.next, t.nextName(), progress)
	}
	if t.live != "" {
		progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("stopping and removing %s (the new container)", t.name)})
		if err := e.stopRemove(ctx, t.live, t.name); err != nil {
			return err
		}
	}
	progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("renaming %s back to %s", t.previousName(), t.name)})
	if err := e.rename(ctx, t.previous, t.name); err != nil {
		return err
	}
	return e.removeCompanion(ctx, t.next, t.nextName(), progress)
}

// removeCompanion stops and removes a candidate or previous container;
// an absent one is removed already.
func (e *Executor) removeCompanion(ctx context.Context, id, name string, progress executor.Progress) error {
	if id == "" {
		progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("%s does not exist; nothing to remove", name)})
		return nil
	}
	progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("stopping and removing %s", name)})
	return e.stopRemove(ctx, id, name)
}

// stopRemove stops a container (stop timeout, so its requests in flight
// finish) and removes it.
func (e *Executor) stopRemove(ctx context.Context, id, name string) error {
	secs := seconds(e.cfg.StopTimeout)
	if _, err := e.docker.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
		return engineError(ctx, err, "stop %s", name)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, err := e.docker.ContainerRemove(rctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return engineError(ctx, err, "remove %s", name)
	}
	return nil
}

func (e *Executor) rename(ctx context.Context, id, to string) error {
	if _, err := e.docker.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: to}); err != nil {
		return engineError(ctx, err, "rename container %s to %s", shortID(id), to)
	}
	return nil
}
