package nginx

import (
	"context"
	"fmt"
	"os"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/validate"
	"go.uber.org/zap"
)

// Executor carries out drain and undrain commands. It is safe for
// concurrent use.
type Executor struct {
	binary     string // resolved nginx executable; empty when no upstream is configured
	configFile string
	upstreams  map[string]Upstream
	log        *zap.Logger
	// lock serializes every edit → nginx -t → reload sequence, across all
	// files and not only per file: the files belong to one nginx
	// configuration, so "nginx -t" after an edit of one file must not see
	// another file's untested edit, nor a reload publish it.
	lock chan struct{}
}

var _ executor.Executor = (*Executor)(nil)

// New validates cfg and returns an Executor. The nginx binary is resolved
// only when upstreams are configured, so that an agent without nginx starts
// (and rejects every drain: no upstream is configured). A nil log discards
// the logs.
func New(cfg Config, log *zap.Logger) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	e := &Executor{
		configFile: cfg.ConfigFile,
		upstreams:  make(map[string]Upstream, len(cfg.Upstreams)),
		log:        log,
		lock:       make(chan struct{}, 1),
	}
	for name, u := range cfg.Upstreams {
		e.upstreams[name] = u
		if _, err := os.Stat(u.File); err != nil {
			// Not fatal: the file may be deployed after the agent starts.
			log.Warn("nginx upstream file is not readable yet", zap.String("upstream", name), zap.String("file", u.File), zap.Error(err))
		}
	}
	if len(cfg.Upstreams) > 0 {
		bin, err := resolveBinary(cfg.Binary)
		if err != nil {
			return nil, err
		}
		e.binary = bin
	}
	return e, nil
}

// request is a validated drain or undrain.
type request struct {
	kind     string // "drain" or "undrain", the spec's field name
	upstream string
	server   string
	down     bool // drain
	target   Upstream
	// swaps are a swap_servers' replacements (server is their summary).
	swaps []swap
}

// Validate checks that spec is a drain or undrain of a configured upstream
// with a well-formed server address. Every refusal is a *executor.Rejection.
func (e *Executor) Validate(spec *flotillav1.CommandSpec) error {
	_, err := e.parse(spec)
	return err
}

func (e *Executor) parse(spec *flotillav1.CommandSpec) (request, error) {
	var r request
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Drain:
		r = request{kind: "drain", upstream: k.Drain.GetUpstream(), server: k.Drain.GetServer(), down: true}
	case *flotillav1.CommandSpec_Undrain:
		r = request{kind: "undrain", upstream: k.Undrain.GetUpstream(), server: k.Undrain.GetServer()}
	case *flotillav1.CommandSpec_SwapServers:
		return e.parseSwap(k.SwapServers)
	default:
		return r, executor.Reject("the nginx executor runs only drain, undrain and swap_servers commands, not %s", command.KindText(spec))
	}
	if r.upstream == "" {
		return r, executor.Reject("%s.upstream: is required", r.kind)
	}
	target, ok := e.upstreams[r.upstream]
	if !ok {
		return r, executor.Reject("%s.upstream: upstream %q is not in nginx.upstreams", r.kind, r.upstream)
	}
	r.target = target
	if r.server == "" {
		return r, executor.Reject("%s.server: is required (host:port)", r.kind)
	}
	if err := validate.ServerAddress(r.server); err != nil {
		return r, executor.Reject("%s.server: %v", r.kind, err)
	}
	return r, nil
}

// Execute drains or undrains the server. A server already in the requested
// state succeeds with changed=false and nginx is left alone. A change that
// nginx -t or the reload refuses fails, with nginx's message, after the
// previous file content is put back; so does a change whose ctx ends before
// the reload. Once started, the reload runs to completion. The result's
// file is the edited file, symlinks resolved.
//
// "nginx -s reload" returns once the master process has the signal; the
// master then starts workers with the new configuration, and the old
// workers finish their requests in flight before they exit.
func (e *Executor) Execute(ctx context.Context, spec *flotillav1.CommandSpec, progress executor.Progress) (*flotillav1.CommandResult, error) {
	req, err := e.parse(spec)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s %s in %s: not started: %w", req.kind, req.server, req.upstream, err)
	}
	progress = progress.OrDiscard()
	if err := e.acquire(ctx); err != nil {
		return nil, fmt.Errorf("%s %s in %s: gave up waiting for another nginx change to finish: %w", req.kind, req.server, req.upstream, err)
	}
	defer e.release()
	if req.swaps != nil {
		res, err := e.applySwap(ctx, req, progress)
		if err != nil {
			return nil, err
		}
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Swap{Swap: res}}, nil
	}
	res, err := e.apply(ctx, req, progress)
	if err != nil {
		return nil, err
	}
	return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Drain{Drain: res}}, nil
}

func (e *Executor) acquire(ctx context.Context) error {
	select {
	case e.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Executor) release() { <-e.lock }

// maxSwaps bounds the replacements of one swap_servers.
const maxSwaps = 10000

// parseSwap validates a swap_servers.
func (e *Executor) parseSwap(c *flotillav1.SwapServersCommand) (request, error) {
	r := request{kind: "swap_servers", upstream: c.GetUpstream()}
	if r.upstream == "" {
		return r, executor.Reject("swap_servers.upstream: is required")
	}
	target, ok := e.upstreams[r.upstream]
	if !ok {
		return r, executor.Reject("swap_servers.upstream: upstream %q is not in nginx.upstreams", r.upstream)
	}
	r.target = target
	if n := len(c.GetSwaps()); n == 0 || n > maxSwaps {
		return r, executor.Reject("swap_servers.swaps: must list 1 to %d replacements, got %d", maxSwaps, n)
	}
	seen := map[string]bool{}
	for i, s := range c.GetSwaps() {
		for _, a := range []string{s.GetFrom(), s.GetTo()} {
			if err := validate.ServerAddress(a); err != nil {
				return r, executor.Reject("swap_servers.swaps[%d]: %v", i, err)
			}
			if seen[a] {
				return r, executor.Reject("swap_servers.swaps[%d]: server %s appears twice", i, validate.Quote(a))
			}
			seen[a] = true
		}
		r.swaps = append(r.swaps, swap{from: s.GetFrom(), to: s.GetTo()})
	}
	r.server = swapText(r.swaps)
	return r, nil
}
