package rollouttest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"flotilla.dev/e2e/internal/fixture"
)

// CreateRecorder follows Docker's event stream live and records, for each
// application container name, the images of its create events. Live,
// because the engine replays only its last 256 events to a query with
// since, and other users of the engine can push a rollout's out of them.
type CreateRecorder struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	byName map[string][]string
	err    error
	once   sync.Once
}

// RecordCreates starts recording the create events of the fleet's
// application containers until Stop.
func RecordCreates(t testing.TB, f Fleet) *CreateRecorder {
	t.Helper()
	d := f.Docker()
	ctx, cancel := context.WithCancel(context.Background())
	r := &CreateRecorder{cancel: cancel, done: make(chan struct{}), byName: map[string][]string{}}
	filters := make(client.Filters).Add("type", "container").Add("event", "create").
		Add("label", fixture.TestLabel+"="+d.RunID)
	// Since now: the engine replays what came between this call and its
	// subscription, then streams live.
	res := d.Client.Events(ctx, client.EventsListOptions{Since: stamp(time.Now()), Filters: filters})
	apps := map[string]bool{}
	for _, h := range f.AppHosts() {
		apps[h.Container] = true
	}
	go func() {
		defer close(r.done)
		for {
			select {
			case m := <-res.Messages:
				if name := m.Actor.Attributes["name"]; apps[name] {
					r.mu.Lock()
					r.byName[name] = append(r.byName[name], m.Actor.Attributes["image"])
					r.mu.Unlock()
				}
			case err := <-res.Err:
				if ctx.Err() == nil {
					r.err = err
				}
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// Stop ends the recording, after a moment for the last events to arrive
// (the first call only), and returns what it saw.
func (r *CreateRecorder) Stop(t testing.TB) map[string][]string {
	t.Helper()
	r.once.Do(func() {
		time.Sleep(time.Second)
		r.cancel()
		<-r.done
	})
	if r.err != nil {
		t.Fatalf("Docker events: %v", r.err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byName
}

// stamp is a time as the Events API's since and until take it.
func stamp(at time.Time) string {
	return strconv.FormatInt(at.Unix(), 10) + "." + fmt.Sprintf("%09d", at.Nanosecond())
}

// upstreamSampler reads the upstream file every few milliseconds during a
// rollout and records which servers it shows drained.
type upstreamSampler struct {
	done    chan struct{}
	stopped chan struct{}
	drained map[string]bool
	maxDown int
}

var downServer = regexp.MustCompile(`server (\S+)[^;]*\bdown;`)

// sampleUpstream starts sampling file.
func sampleUpstream(t testing.TB, file string) *upstreamSampler {
	t.Helper()
	s := &upstreamSampler{done: make(chan struct{}), stopped: make(chan struct{}), drained: map[string]bool{}}
	go func() {
		defer close(s.stopped)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
			b, err := os.ReadFile(file)
			if err != nil {
				continue // replaced meanwhile
			}
			down := downServer.FindAllStringSubmatch(string(b), -1)
			s.maxDown = max(s.maxDown, len(down))
			for _, m := range down {
				s.drained[m[1]] = true
			}
		}
	}()
	t.Cleanup(func() { s.stop() })
	return s
}

// stop stops sampling and returns what was seen.
func (s *upstreamSampler) stop() (map[string]bool, int) {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	<-s.stopped
	return s.drained, s.maxDown
}
