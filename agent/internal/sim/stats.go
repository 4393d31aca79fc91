package sim

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
)

// maxTrackedTags bounds the receipt times kept: the most recent command
// targets (image references, database names) only.
const maxTrackedTags = 16

// Stats counts what the simulated fleet did. Receipt times are kept per
// command target (a pull's or restart's image, a backup's database), so a
// benchmark that sends a command with a unique target can read when each
// agent received it, on the simulator's clock.
type Stats struct {
	started    atomic.Int64 // agents started
	stopped    atomic.Int64 // agents that stopped with an error
	heartbeats atomic.Int64
	succeeded  atomic.Int64
	failed     atomic.Int64
	byKind     sync.Map // kind → *atomic.Int64 commands received

	mu       sync.Mutex
	receipts map[string][]int64 // tag → receipt times (Unix ns)
	tags     []string           // oldest first
	capacity int
}

func newStats(agents int) *Stats {
	return &Stats{receipts: map[string][]int64{}, capacity: agents}
}

// received records that an agent admitted spec (its Validate ran).
func (s *Stats) received(spec *flotillav1.CommandSpec) {
	kind := command.Kind(spec)
	c, _ := s.byKind.LoadOrStore(kind, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	tag := Tag(spec)
	if tag == "" {
		return
	}
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	times, ok := s.receipts[tag]
	if !ok {
		if len(s.tags) == maxTrackedTags {
			delete(s.receipts, s.tags[0])
			s.tags = s.tags[1:]
		}
		s.tags = append(s.tags, tag)
		times = make([]int64, 0, s.capacity)
	}
	s.receipts[tag] = append(times, now)
}

// Tag is the target a command's receipts are filed under.
func Tag(spec *flotillav1.CommandSpec) string {
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Pull:
		return k.Pull.GetImage()
	case *flotillav1.CommandSpec_Restart:
		return k.Restart.GetImage()
	case *flotillav1.CommandSpec_Backup:
		return k.Backup.GetDatabase()
	}
	return ""
}

// Receipts returns the times (Unix ns, sorted) at which agents received a
// command with the given target.
func (s *Stats) Receipts(tag string) []int64 {
	s.mu.Lock()
	out := slices.Clone(s.receipts[tag])
	s.mu.Unlock()
	slices.Sort(out)
	return out
}

// Snapshot is the counters at one moment, as the status endpoint serves them.
type Snapshot struct {
	Started    int64            `json:"started"`
	Stopped    int64            `json:"stopped_with_error"`
	Heartbeats int64            `json:"heartbeats"`
	Received   map[string]int64 `json:"received"`
	Succeeded  int64            `json:"succeeded"`
	Failed     int64            `json:"failed"`
}

// Snapshot reads the counters.
func (s *Stats) Snapshot() Snapshot {
	snap := Snapshot{
		Started: s.started.Load(), Stopped: s.stopped.Load(), Heartbeats: s.heartbeats.Load(),
		Succeeded: s.succeeded.Load(), Failed: s.failed.Load(), Received: map[string]int64{},
	}
	s.byKind.Range(func(k, v any) bool {
		snap.Received[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return snap
}
