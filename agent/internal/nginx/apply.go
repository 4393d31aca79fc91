package nginx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"go.uber.org/zap"
)

// apply edits the upstream file, tests and reloads nginx, and restores the
// file when nginx refuses. The caller holds e.lock.
func (e *Executor) apply(ctx context.Context, req request, progress executor.Progress) (*flotillav1.DrainResult, error) {
	// A symlinked file (sites-enabled → sites-available) is edited where it
	// lives, so that the rename does not replace the link with a copy.
	path, err := filepath.EvalSymlinks(req.target.File)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read the upstream file of nginx.upstreams.%s: %w", req.kind, req.upstream, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read the upstream file of nginx.upstreams.%s: %w", req.kind, req.upstream, err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read the upstream file of nginx.upstreams.%s: %w", req.kind, req.upstream, err)
	}
	edit, err := editUpstream(old, req.target.Block, req.server, req.down)
	if err != nil {
		return nil, e.editError(req, path, err)
	}
	result := &flotillav1.DrainResult{Upstream: req.upstream, Server: req.server, File: path, Changed: edit.changed}
	log := e.log.With(zap.String("action", req.kind), zap.String("upstream", req.upstream),
		zap.String("server", req.server), zap.String("file", path), zap.Strings("blocks", blockLabels(edit.blocks)))
	if !edit.changed {
		log.Info("nginx server already in the requested state; nothing to do")
		progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("server %s is already %s in %s; nginx not reloaded", req.server, stateWord(req.down), path)})
		return result, nil
	}
	if err := e.publish(ctx, req, path, old, edit.content, info, progress); err != nil {
		log.Warn("nginx change refused; previous upstream file restored", zap.Error(err))
		return nil, err
	}
	log.Info("nginx upstream changed and reloaded")
	if len(edit.allDown) > 0 {
		msg := fmt.Sprintf("every server of upstream %s in %s is now down: nginx has nowhere to send its requests", strings.Join(blockLabels(edit.allDown), ", "), path)
		log.Warn(msg)
		progress(&flotillav1.CommandProgress{Message: msg})
	}
	return result, nil
}

// publish writes the new content, has nginx test and load it, and puts old
// back when either step fails.
func (e *Executor) publish(ctx context.Context, req request, path string, old, content []byte, info os.FileInfo, progress executor.Progress) error {
	what := fmt.Sprintf("marking %s %s in %s", req.server, stateWord(req.down), path)
	if req.swaps != nil {
		what = fmt.Sprintf("replacing %s in %s", req.server, path)
	}
	progress(&flotillav1.CommandProgress{Message: what})
	if err := writeAtomic(path, content, info); err != nil {
		return fmt.Errorf("%s %s: %w; the upstream file was not changed", req.kind, req.server, err)
	}
	progress(&flotillav1.CommandProgress{Message: "testing the nginx configuration (nginx -t)"})
	if err := e.testConfig(ctx); err != nil {
		return e.restore(path, old, info, fmt.Errorf("%s %s: nginx refused the new configuration: %w", req.kind, req.server, err))
	}
	if err := ctx.Err(); err != nil {
		// Cancelled or past the deadline: leave nginx exactly as it was.
		return e.restore(path, old, info, fmt.Errorf("%s %s: stopped before the reload: %w", req.kind, req.server, err))
	}
	progress(&flotillav1.CommandProgress{Message: "reloading nginx (nginx -s reload)"})
	if err := e.reload(ctx); err != nil {
		return e.restore(path, old, info, fmt.Errorf("%s %s: reloading nginx failed: %w", req.kind, req.server, err))
	}
	return nil
}

// restore puts the previous content back and returns cause, completed
// with what happened to the file.
func (e *Executor) restore(path string, old []byte, info os.FileInfo, cause error) error {
	if err := writeAtomic(path, old, info); err != nil {
		e.log.Error("nginx upstream file not restored", zap.String("file", path), zap.Error(err))
		return fmt.Errorf("%w; restoring the previous content of %s ALSO FAILED (%v): the file holds the refused change, fix it by hand before the next reload", cause, path, err)
	}
	return fmt.Errorf("%w; %s was restored to its previous content and nginx still runs the previous configuration", cause, path)
}

// editError explains why the file could not be edited; the file is
// untouched in every case.
func (e *Executor) editError(req request, path string, err error) error {
	switch {
	case errors.Is(err, errServerNotFound):
		return fmt.Errorf("%s: server %s is not in upstream %s (%s)", req.kind, req.server, req.upstream, path)
	case errors.Is(err, errBlockNotFound):
		return fmt.Errorf("%s: %s has no upstream block %q (nginx.upstreams.%s.block)", req.kind, path, req.target.Block, req.upstream)
	default:
		return fmt.Errorf("%s: cannot parse %s: %w; the file was not changed", req.kind, path, err)
	}
}

func stateWord(down bool) string {
	if down {
		return "down"
	}
	return "up"
}

// blockLabels names upstream blocks for messages; "" is a fragment's top
// level.
func blockLabels(blocks []string) []string {
	labels := make([]string, len(blocks))
	for i, b := range blocks {
		labels[i] = b
		if b == "" {
			labels[i] = "(included fragment)"
		}
	}
	return labels
}

// applySwap replaces servers of the upstream file in one edit, then tests
// and reloads nginx once, like apply. The caller holds e.lock.
func (e *Executor) applySwap(ctx context.Context, req request, progress executor.Progress) (*flotillav1.SwapResult, error) {
	path, err := filepath.EvalSymlinks(req.target.File)
	if err != nil {
		return nil, fmt.Errorf("swap_servers: cannot read the upstream file of nginx.upstreams.%s: %w", req.upstream, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("swap_servers: cannot read the upstream file of nginx.upstreams.%s: %w", req.upstream, err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("swap_servers: cannot read the upstream file of nginx.upstreams.%s: %w", req.upstream, err)
	}
	out, err := swapServers(old, req.target.Block, req.swaps)
	if err != nil {
		if errors.Is(err, errBlockNotFound) {
			return nil, e.editError(req, path, err)
		}
		return nil, fmt.Errorf("swap_servers in upstream %s (%s): %w", req.upstream, path, err)
	}
	result := &flotillav1.SwapResult{Upstream: req.upstream, File: path, Swapped: int32(out.swapped)}
	log := e.log.With(zap.String("action", req.kind), zap.String("upstream", req.upstream), zap.String("swaps", req.server), zap.String("file", path))
	if out.swapped == 0 {
		log.Info("nginx servers already swapped; nothing to do")
		progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("%s already in place in %s; nginx not reloaded", req.server, path)})
		return result, nil
	}
	if err := e.publish(ctx, req, path, old, out.content, info, progress); err != nil {
		log.Warn("nginx change refused; previous upstream file restored", zap.Error(err))
		return nil, err
	}
	log.Info("nginx upstream servers swapped and reloaded", zap.Int("swapped", out.swapped))
	return result, nil
}
