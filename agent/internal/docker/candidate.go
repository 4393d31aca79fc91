package docker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"flotilla.dev/agent/internal/executor"
	"flotilla.dev/agent/internal/health"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// The names of a container's blue-green companions: the candidate started
// beside it, and the previous container kept after a switch.
const (
	nextSuffix     = ".flotilla-next"
	previousSuffix = ".flotilla-previous"
)

// Defaults of a candidate's health gate when the command leaves them unset.
const (
	defaultCandidateMinHealthy = 10 * time.Second
	defaultCandidateDeadline   = 5 * time.Minute
)

// candidateRequest is a validated StartCandidateCommand.
type candidateRequest struct {
	container            string
	image                imageRef
	port, candidatePort  int
	minHealthy, deadline time.Duration
}

func (e *Executor) parseCandidate(c *flotillav1.StartCandidateCommand) (candidateRequest, error) {
	req := candidateRequest{container: c.GetContainer(), port: int(c.GetPort()), candidatePort: int(c.GetCandidatePort()),
		minHealthy: defaultCandidateMinHealthy, deadline: defaultCandidateDeadline}
	if err := validateContainerName(req.container); err != nil {
		return req, executor.Reject("start_candidate.container: %v", err)
	}
	ref, err := e.validImage("start_candidate.image", c.GetImage())
	if err != nil {
		return req, err
	}
	req.image = ref
	if req.port < 1 || req.port > 65535 {
		return req, executor.Reject("start_candidate.port: must be 1-65535, got %d", req.port)
	}
	if req.candidatePort < 1 || req.candidatePort > 65535 || req.candidatePort == req.port {
		return req, executor.Reject("start_candidate.candidate_port: must be 1-65535 and not port, got %d", req.candidatePort)
	}
	if d := c.GetMinHealthyTime(); d != nil {
		req.minHealthy = d.AsDuration()
	}
	if d := c.GetHealthyDeadline(); d != nil && d.AsDuration() > 0 {
		req.deadline = d.AsDuration()
	}
	if req.minHealthy < 0 || req.minHealthy > req.deadline {
		return req, executor.Reject("start_candidate.min_healthy_time: must be between 0s and healthy_deadline %s, got %s", req.deadline, req.minHealthy)
	}
	if e.cfg.HealthURL == "" {
		return req, executor.Reject("start_candidate: this agent has no health.url, so it cannot check the candidate's health")
	}
	return req, nil
}

// LabelHealthPort is set on a candidate to the host port it publishes the
// application on: once it is the live container, the agent checks the
// application's health there instead of on health.url's port.
const LabelHealthPort = "flotilla.health-port"

// withPort is rawURL with another port (unchanged when it does not parse).
func withPort(rawURL string, port int) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(port))
	return u.String()
}

// HealthPort is the port the application's health is checked on instead of
// health.url's, 0 for health.url's own: when no managed container
// publishes health.url's port but one carries LabelHealthPort and
// publishes that port (a blue-green or surge rollout moved it). It is
// what the last container list (every heartbeat, and every blue_green
// command) found.
func (e *Executor) HealthPort() int { return int(e.healthPort.Load()) }

// noteHealthPort updates HealthPort from a container list.
func (e *Executor) noteHealthPort(list []container.Summary) {
	u, err := url.Parse(e.cfg.HealthURL)
	if err != nil || u.Port() == "" {
		return
	}
	want, _ := strconv.Atoi(u.Port())
	moved := 0
	for _, c := range list {
		name := containerName(c.Names)
		if strings.HasSuffix(name, nextSuffix) || strings.HasSuffix(name, previousSuffix) || strings.HasSuffix(name, oldSuffix) {
			continue
		}
		ports := hostPorts(c.Ports)
		if slices.Contains(ports, int32(want)) {
			e.healthPort.Store(0)
			return
		}
		if p, err := strconv.Atoi(c.Labels[LabelHealthPort]); err == nil && slices.Contains(ports, int32(p)) {
			moved = p
		}
	}
	e.healthPort.Store(int32(moved))
}

// candidateHealthURL is the agent's health URL with the candidate's port:
// the health URL must reach the live container through its published port.
func candidateHealthURL(healthURL string, port, candidatePort int) (string, error) {
	u, err := url.Parse(healthURL)
	if err != nil {
		return "", fmt.Errorf("health.url %q does not parse: %w", healthURL, err)
	}
	if u.Port() != strconv.Itoa(port) {
		return "", fmt.Errorf("health.url %s does not use the container's published port %d, so the candidate's health cannot be checked on its own port %d; point health.url at the published port (e.g. http://127.0.0.1:%d/health)",
			healthURL, port, candidatePort, port)
	}
	u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(candidatePort))
	return u.String(), nil
}

// startCandidate starts the candidate of a managed container on the other
// port and gates it on its health there. The live container is never
// touched; a candidate that fails is removed.
func (e *Executor) startCandidate(ctx context.Context, req candidateRequest, progress executor.Progress) (*flotillav1.CandidateResult, error) {
	requested := req.container
	local := e.localName(requested)
	unlock, err := e.locks.lock(ctx, local)
	if err != nil {
		return nil, err
	}
	defer unlock()
	live, err := e.managedContainer(ctx, local)
	if err != nil {
		return nil, err
	}
	if _, present, err := e.imagePresent(ctx, req.image); err != nil {
		return nil, err
	} else if !present {
		return nil, fmt.Errorf("image %s is not present; pull it first", req.image.raw)
	}
	base := e.cfg.HealthURL
	if live.Container.Config != nil && live.Container.Config.Labels[LabelHealthPort] == strconv.Itoa(req.port) {
		base = withPort(base, req.port) // an earlier rollout moved the application there
	}
	healthURL, err := candidateHealthURL(base, req.port, req.candidatePort)
	if err != nil {
		return nil, err
	}
	if err := e.clearCandidateSlot(ctx, local, progress); err != nil {
		return nil, err
	}
	plan := planRecreate(live.Container, e.imageConfig(ctx, live.Container.Image), req.image.raw)
	plan.config.Labels[LabelHealthPort] = strconv.Itoa(req.candidatePort)
	if err := movePort(plan.host, req.port, req.candidatePort); err != nil {
		return nil, fmt.Errorf("container %s: %w", local, err)
	}
	if plan.networking != nil {
		for _, ep := range plan.networking.EndpointsConfig {
			ep.IPAMConfig = nil // a static address belongs to the live container
		}
	}
	for _, ep := range plan.extra {
		ep.IPAMConfig = nil
	}
	name := local + nextSuffix
	id, err := e.createCandidate(ctx, name, plan, progress)
	if err != nil {
		return nil, e.discardFailed(ctx, id, name, err)
	}
	if err := e.candidateHealthy(ctx, id, name, healthURL, req, progress); err != nil {
		return nil, e.discardFailed(ctx, id, name, err)
	}
	if policy := plan.host.RestartPolicy; policy.Name != "" && !policy.IsNone() {
		if _, err := e.docker.ContainerUpdate(ctx, id, client.ContainerUpdateOptions{RestartPolicy: &policy}); err != nil {
			return nil, e.discardFailed(ctx, id, name, engineError(ctx, err, "give the candidate its restart policy %q", policy.Name))
		}
	}
	res := &flotillav1.CandidateResult{Container: requested, Candidate: name, ContainerId: id, Image: req.image.raw,
		PreviousContainerId: live.Container.ID, HealthUrl: healthURL}
	if live.Container.Config != nil {
		res.PreviousImage = live.Container.Config.Image
	}
	e.log.Info("candidate healthy", zap.String("container", local), zap.String("candidate", name), zap.String("image", req.image.raw),
		zap.String("health_url", healthURL))
	return res, nil
}

// clearCandidateSlot refuses while a previous container is kept (its port
// is the candidate's), and removes a candidate left by an interrupted
// command: it never took traffic.
func (e *Executor) clearCandidateSlot(ctx context.Context, local string, progress executor.Progress) error {
	if _, exists, err := e.inspectByName(ctx, local+previousSuffix); err != nil {
		return err
	} else if exists {
		return fmt.Errorf("container %s%s, kept by a blue-green rollout, still exists and holds the other port; wait for that rollout to end (or remove it: docker rm -f)", local, previousSuffix)
	}
	old, exists, err := e.inspectByName(ctx, local+nextSuffix)
	if err != nil || !exists {
		return err
	}
	progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("removing %s%s, left by an interrupted candidate", local, nextSuffix)})
	if _, err := e.docker.ContainerRemove(ctx, old.Container.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return engineError(ctx, err, "remove the leftover candidate %s%s", local, nextSuffix)
	}
	return nil
}

// movePort publishes on candidatePort what the live container publishes on
// port.
func movePort(host *container.HostConfig, port, candidatePort int) error {
	if host.NetworkMode.IsHost() {
		return errors.New("it uses the host's network: a candidate beside it cannot listen on another port; publish the application's port instead (-p)")
	}
	moved := false
	bindings := network.PortMap{}
	for p, bs := range host.PortBindings {
		out := slices.Clone(bs)
		for i, b := range out {
			if b.HostPort == strconv.Itoa(port) {
				out[i].HostPort, moved = strconv.Itoa(candidatePort), true
			}
		}
		bindings[p] = out
	}
	if !moved {
		return fmt.Errorf("it publishes no host port %d (its bindings: %v); the load balancer's port must be the published host port", port, slices.Collect(maps.Keys(host.PortBindings)))
	}
	host.PortBindings = bindings
	return nil
}

// createCandidate creates and starts the candidate and confirms that it
// stays running for the start grace period. id is set once it exists.
func (e *Executor) createCandidate(ctx context.Context, name string, plan createPlan, progress executor.Progress) (id string, err error) {
	d := e.docker
	progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("creating %s from %s", name, plan.config.Image)})
	host := *plan.host
	host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyDisabled}
	created, err := d.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: plan.config, HostConfig: &host, NetworkingConfig: plan.networking})
	if err != nil {
		return "", engineError(ctx, err, "create the candidate %s", name)
	}
	for _, net := range slices.Sorted(maps.Keys(plan.extra)) {
		if _, err := d.NetworkConnect(ctx, net, client.NetworkConnectOptions{Container: created.ID, EndpointConfig: plan.extra[net]}); err != nil {
			return created.ID, engineError(ctx, err, "connect the candidate to network %s", net)
		}
	}
	if _, err := d.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return created.ID, engineError(ctx, err, "start the candidate %s", name)
	}
	return created.ID, e.confirmRunning(ctx, created.ID, "the candidate "+name, e.cfg.StartGracePeriod)
}

// candidateHealthy checks the candidate's health on its own port until it
// is healthy continuously for minHealthy (from the first healthy answer of
// the streak to the latest), or fails at the deadline or when the
// container stops running.
func (e *Executor) candidateHealthy(ctx context.Context, id, name, healthURL string, req candidateRequest, progress executor.Progress) error {
	checker, err := health.New(health.Config{URL: healthURL, Timeout: e.cfg.HealthTimeout, UserAgent: "flotilla-agent (candidate check)"})
	if err != nil {
		return err
	}
	defer checker.Close()
	progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("checking %s's health at %s: %s of continuous health within %s", name, healthURL, req.minHealthy, req.deadline)})
	deadline := time.Now().Add(req.deadline)
	var since time.Time
	why := "no answer yet"
	first, err := e.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return engineError(ctx, err, "inspect the candidate %s", name)
	}
	for {
		res := checker.Check(ctx)
		now := time.Now()
		switch {
		case !res.GetHealthy():
			since, why = time.Time{}, res.GetError()
		case since.IsZero():
			since = now
		}
		if !since.IsZero() && now.Sub(since) >= req.minHealthy {
			return nil
		}
		if !now.Before(deadline) {
			return fmt.Errorf("the candidate %s was not healthy for %s within %s at %s (last: %s)", name, req.minHealthy, req.deadline, healthURL, why)
		}
		cur, err := e.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return engineError(ctx, err, "inspect the candidate %s", name)
		}
		if err := runningState("the candidate "+name, first.Container, cur.Container); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("checking the candidate %s's health: %w", name, ctx.Err())
		case <-time.After(e.candidatePoll):
		}
	}
}

// discardFailed removes a failed candidate (with its last log lines in the
// error) on a context of its own: the live container was never touched.
func (e *Executor) discardFailed(ctx context.Context, id, name string, cause error) error {
	if id == "" {
		return fmt.Errorf("candidate %s: %w; the live container was not touched", name, cause)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	logs := e.logsNote(rctx, id, "the candidate")
	if _, err := e.docker.ContainerRemove(rctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("candidate %s: %w; removing it FAILED too (%v): remove it by hand (docker rm -f %s); the live container was not touched%s", name, cause, err, name, logs)
	}
	e.log.Warn("candidate failed and was removed", zap.String("candidate", name), zap.Error(cause))
	return fmt.Errorf("candidate %s: %w; it was removed and the live container was not touched%s", name, cause, logs)
}
