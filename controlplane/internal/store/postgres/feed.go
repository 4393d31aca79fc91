package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
)

// feedTopics are the channels the feed LISTENs on: one per sequenced
// table, notified by the table's triggers (migration 0008) at commit.
var feedTopics = []string{store.TopicCommands, store.TopicReports, store.TopicRollouts}

// FeedApplicationName names the feed's connection in pg_stat_activity.
const FeedApplicationName = "flotilla-feed"

// Feed backoff between reconnections: doubled from the first to the last.
const (
	feedFirstBackoff = 100 * time.Millisecond
	feedMaxBackoff   = 5 * time.Second
)

// feed implements store.Feed with one dedicated connection LISTENing on
// every topic. It starts with the first subscription and reconnects with
// backoff until the store is closed; after every (re)LISTEN it wakes every
// subscriber, since notifications sent meanwhile were lost.
type feed struct {
	conn *pgx.ConnConfig
	log  *zap.Logger

	mu      sync.Mutex
	subs    map[string]map[chan struct{}]struct{}
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

func newFeed(conn *pgx.ConnConfig, log *zap.Logger) *feed {
	conn = conn.Copy()
	if conn.RuntimeParams == nil {
		conn.RuntimeParams = map[string]string{}
	}
	conn.RuntimeParams["application_name"] = FeedApplicationName
	return &feed{conn: conn, log: log, subs: make(map[string]map[chan struct{}]struct{}), done: make(chan struct{})}
}

// Feed returns the store's change feed (see store.Feed).
func (s *Store) Feed() store.Feed { return s.feed }

// Subscribe implements store.Feed.
func (f *feed) Subscribe(topic string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs[topic] == nil {
		f.subs[topic] = make(map[chan struct{}]struct{})
	}
	f.subs[topic][ch] = struct{}{}
	if !f.started {
		f.started = true
		ctx, cancel := context.WithCancel(context.Background())
		f.cancel = cancel
		go f.run(ctx)
	}
	return ch, func() {
		f.mu.Lock()
		delete(f.subs[topic], ch)
		f.mu.Unlock()
	}
}

// close stops the feed and waits for its connection to close.
func (f *feed) close() {
	f.mu.Lock()
	started, cancel := f.started, f.cancel
	f.started, f.cancel = true, nil // no start after close
	f.mu.Unlock()
	if started && cancel != nil {
		cancel()
		<-f.done
	}
}

// wake wakes topic's subscribers ("" every topic's).
func (f *feed) wake(topic string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t, subs := range f.subs {
		if topic != "" && t != topic {
			continue
		}
		for ch := range subs {
			select {
			case ch <- struct{}{}:
			default: // one wake-up is already waiting
			}
		}
	}
}

// run listens until ctx ends, reconnecting with backoff.
func (f *feed) run(ctx context.Context) {
	defer close(f.done)
	backoff := feedFirstBackoff
	for {
		listened, err := f.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		if listened {
			backoff = feedFirstBackoff
		}
		f.log.Warn("change feed connection lost; reconnecting", zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, feedMaxBackoff)
	}
}

// listen connects, LISTENs on every topic, wakes every subscriber and
// relays notifications until the connection fails or ctx ends. listened
// says whether it got as far as listening.
func (f *feed) listen(ctx context.Context) (listened bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, f.conn)
	if err != nil {
		return false, wrap(err, "change feed: connect")
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	for _, topic := range feedTopics {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{topic}.Sanitize()); err != nil {
			return false, wrap(err, "change feed: listen %s", topic)
		}
	}
	// Whatever was notified while not listening was lost: catch up.
	f.wake("")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return true, nil
			}
			return true, wrap(err, "change feed: wait")
		}
		f.wake(n.Channel)
	}
}
