package rollout

import (
	"context"
	"time"
)

// SetCommitHook makes e call hook after each stored transition, before the
// transition's commands are sent (tests kill the control plane there).
// Call it before Run.
func SetCommitHook(e *Engine, hook func(ctx context.Context, rolloutID string)) {
	e.commitHook = hook
}

// SetReconnectGrace sets how long a start waits for reconnecting hosts
// (Config.ReconnectGrace). Call it before Run.
func SetReconnectGrace(e *Engine, d time.Duration) {
	e.cfg.ReconnectGrace = d
}
