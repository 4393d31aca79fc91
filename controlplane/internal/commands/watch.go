package commands

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
)

// watcherBuffer is how many messages a slow watcher may fall behind before
// it is dropped (it can watch again and gets a fresh snapshot).
const watcherBuffer = 1024

// errSlowWatcher ends a watcher that fell too far behind.
var errSlowWatcher = fault.Exhaustedf("watcher fell behind; watch again for a fresh snapshot")

type watcher struct {
	ch   chan *flotillav1.WatchCommandResponse
	once sync.Once
	done chan struct{}
	err  error
}

func (w *watcher) close(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.done)
	})
}

// broadcast queues msg for every watcher; the caller holds m.mu.
func (r *run) broadcast(msg *flotillav1.WatchCommandResponse) {
	for w := range r.watchers {
		select {
		case w.ch <- msg:
		default:
			w.close(errSlowWatcher)
			delete(r.watchers, w)
		}
	}
}

// Watch sends the command's snapshot, then its host events, until the
// command ends (a final snapshot) or ctx ends.
func (m *Manager) Watch(ctx context.Context, fcID string, send func(*flotillav1.WatchCommandResponse) error) error {
	m.mu.Lock()
	r, ok := m.running[fcID]
	if !ok {
		m.mu.Unlock()
		fc, err := m.Get(ctx, fcID, flotillav1.CommandView_COMMAND_VIEW_FULL)
		if err != nil {
			return err
		}
		if m.replica() && fc.GetState() == flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING {
			// Driven by another replica: its changes come from the store.
			return m.watchRemote(ctx, fcID, send)
		}
		// Already finished: the snapshot is the whole story.
		return send(&flotillav1.WatchCommandResponse{Body: &flotillav1.WatchCommandResponse_Snapshot{Snapshot: fc}})
	}
	w := &watcher{ch: make(chan *flotillav1.WatchCommandResponse, watcherBuffer), done: make(chan struct{})}
	r.watchers[w] = struct{}{}
	snap := r.snapshot(true)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(r.watchers, w)
		m.mu.Unlock()
	}()
	if err := send(&flotillav1.WatchCommandResponse{Body: &flotillav1.WatchCommandResponse_Snapshot{Snapshot: snap}}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case msg := <-w.ch:
			if err := send(msg); err != nil {
				return err
			}
		case <-w.done:
			// Drain what was queued before the end (the final snapshot).
			for {
				select {
				case msg := <-w.ch:
					if err := send(msg); err != nil {
						return err
					}
				default:
					if w.err != nil && !errors.Is(w.err, context.Canceled) {
						return w.err
					}
					return nil
				}
			}
		}
	}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
