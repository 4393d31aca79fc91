package rollout

import "context"

// SetCommitHook makes e call hook after each stored transition, before the
// transition's commands are sent (tests kill the control plane there).
// Call it before Run.
func SetCommitHook(e *Engine, hook func(ctx context.Context, rolloutID string)) {
	e.commitHook = hook
}
