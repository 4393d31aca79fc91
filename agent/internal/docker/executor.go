package docker

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.uber.org/zap"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
)

// Executor runs pull and restart commands against one Docker engine.
type Executor struct {
	cfg        Config
	log        *zap.Logger
	docker     *client.Client
	registries map[string]struct{}
	labelKey   string
	labelValue string
	managed    map[string]struct{}
	// localNames and serviceNames are docker.container_names and its inverse.
	localNames   map[string]string
	serviceNames map[string]string
	locks        *nameLocks
	// resources is what the resource reader keeps between heartbeats.
	resources *resourceState
	// pollInterval is how often a starting container is inspected.
	pollInterval time.Duration
	// progressInterval throttles pull progress reports.
	progressInterval time.Duration
	// candidatePoll is the interval of a candidate's health checks.
	candidatePoll time.Duration
	// healthPort is HealthPort's answer, as the last container list found.
	healthPort atomic.Int32
}

var _ executor.Executor = (*Executor)(nil)

// New validates cfg, fills its defaults and makes a client for the
// engine. The client negotiates the API version on first use, so engines
// from API 1.40 (Docker 19.03) on work; New itself makes no request (Ping
// does). A nil log discards the executor's logs.
func New(cfg Config, log *zap.Logger) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	cfg = cfg.withDefaults()
	opts := []client.Opt{client.FromEnv,
		// The client wraps every request in OpenTelemetry instrumentation;
		// the agent exports no traces, and the wrapper was 8 % of the idle
		// agent's CPU (a container list every heartbeat).
		client.WithTraceOptions(otelhttp.WithFilter(func(*http.Request) bool { return false }))}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker.host: cannot make a Docker client for %q: %w", cfg.Host, err)
	}
	key, value, _ := parseLabel(cfg.ManagedLabel) // checked by Validate
	e := &Executor{
		cfg:              cfg,
		log:              log,
		docker:           cli,
		registries:       make(map[string]struct{}),
		labelKey:         key,
		labelValue:       value,
		managed:          make(map[string]struct{}),
		localNames:       make(map[string]string, len(cfg.ContainerNames)),
		serviceNames:     make(map[string]string, len(cfg.ContainerNames)),
		locks:            newNameLocks(),
		resources:        newResourceState(time.Now()),
		pollInterval:     200 * time.Millisecond,
		progressInterval: 500 * time.Millisecond,
		candidatePoll:    500 * time.Millisecond,
	}
	for _, r := range cfg.AllowedRegistries {
		e.registries[strings.ToLower(r)] = struct{}{}
	}
	for _, n := range cfg.ManagedContainers {
		e.managed[n] = struct{}{}
	}
	for svc, local := range cfg.ContainerNames {
		e.localNames[svc], e.serviceNames[local] = local, svc
	}
	return e, nil
}

// Close releases the client's idle connections.
func (e *Executor) Close() error { return e.docker.Close() }

// Ping checks that the engine answers and negotiates the API version.
func (e *Executor) Ping(ctx context.Context) error {
	if _, err := e.docker.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("docker engine at %s does not answer: %w", e.docker.DaemonHost(), err)
	}
	return nil
}

// Validate checks a pull or restart spec: the reference grammar, the
// registry guard rail and the container-name grammar. Whether a container
// is managed is checked by Execute, because only the engine knows its
// labels. Other kinds are rejected.
func (e *Executor) Validate(spec *flotillav1.CommandSpec) error {
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Pull:
		_, err := e.validImage("pull.image", k.Pull.GetImage())
		return err
	case *flotillav1.CommandSpec_Restart:
		_, err := e.parseRestart(k.Restart)
		return err
	case *flotillav1.CommandSpec_StartCandidate:
		_, err := e.parseCandidate(k.StartCandidate)
		return err
	case *flotillav1.CommandSpec_BlueGreen:
		return validateBlueGreen(k.BlueGreen)
	default:
		return executor.Reject("the docker executor runs pull, restart, start_candidate and blue_green commands, not %s", command.KindText(spec))
	}
}

func validateBlueGreen(c *flotillav1.BlueGreenCommand) error {
	if err := validateContainerName(c.GetContainer()); err != nil {
		return executor.Reject("blue_green.container: %v", err)
	}
	if _, ok := flotillav1.BlueGreenAction_name[int32(c.GetAction())]; !ok || c.GetAction() == flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_UNSPECIFIED {
		return executor.Reject("blue_green.action: %d is not an action", c.GetAction())
	}
	return nil
}

// Execute runs a pull or restart command.
func (e *Executor) Execute(ctx context.Context, spec *flotillav1.CommandSpec, progress executor.Progress) (*flotillav1.CommandResult, error) {
	progress = progress.OrDiscard()
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Pull:
		ref, err := e.validImage("pull.image", k.Pull.GetImage())
		if err != nil {
			return nil, err
		}
		res, err := e.pull(ctx, ref, progress)
		if err != nil {
			return nil, err
		}
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Pull{Pull: res}}, nil
	case *flotillav1.CommandSpec_Restart:
		req, err := e.parseRestart(k.Restart)
		if err != nil {
			return nil, err
		}
		res, err := e.restart(ctx, req, progress)
		if err != nil {
			return nil, err
		}
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Restart{Restart: res}}, nil
	case *flotillav1.CommandSpec_StartCandidate:
		req, err := e.parseCandidate(k.StartCandidate)
		if err != nil {
			return nil, err
		}
		res, err := e.startCandidate(ctx, req, progress)
		if err != nil {
			return nil, err
		}
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Candidate{Candidate: res}}, nil
	case *flotillav1.CommandSpec_BlueGreen:
		if err := validateBlueGreen(k.BlueGreen); err != nil {
			return nil, err
		}
		return nil, e.blueGreen(ctx, k.BlueGreen.GetContainer(), k.BlueGreen.GetAction(), progress)
	default:
		return nil, executor.Reject("the docker executor runs pull, restart, start_candidate and blue_green commands, not %s", command.KindText(spec))
	}
}
