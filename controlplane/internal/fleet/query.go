package fleet

import (
	"maps"
	"sort"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/selector"
	"flotilla.dev/controlplane/internal/store"
)

// Agent is a consistent copy of one agent's live state. The messages it
// points to are never modified after the registry stores them, so a copy may
// share them.
type Agent struct {
	Record        store.Agent
	Hello         *flotillav1.Hello
	LastHeartbeat *flotillav1.Heartbeat
	// HeartbeatAt is when LastHeartbeat was received.
	HeartbeatAt time.Time
	// CurrentAt is how far LastHeartbeat is known current: HeartbeatAt,
	// or, for an agent whose stream another replica holds, that replica's
	// flush watermark when later: heartbeats that change nothing
	// (application health, containers) are not written at once, and it
	// has written every change up to then.
	CurrentAt time.Time
	// Connected is set when this process holds the agent's stream.
	Connected bool
}

// snapshot copies e (r.mu held).
func (r *Registry) snapshot(e *entry) Agent {
	rec := e.rec
	rec.Labels = maps.Clone(e.rec.Labels)
	rec.PinnedLabels = maps.Clone(e.rec.PinnedLabels)
	return Agent{Record: rec, Hello: e.hello, LastHeartbeat: e.lastHeartbeat, HeartbeatAt: e.heartbeatAt,
		CurrentAt: r.currentAt(e), Connected: e.session != nil}
}

// Has reports whether id is a registered agent (deregistered agents are
// removed from the registry).
func (r *Registry) Has(id string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.agents[id]
	return ok
}

// Get returns one agent.
func (r *Registry) Get(id string) (Agent, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.agents[id]
	if !ok {
		return Agent{}, false
	}
	return r.snapshot(e), true
}

// Query selects agents.
type Query struct {
	Selector selector.Selector
	// States keeps only agents in these states; all when empty.
	States []string
	// After starts the page after this agent ID.
	After string
	// Limit is the page size.
	Limit int
}

// List returns one page of matching agents ordered by ID, whether more
// follow, and how many matched in all.
func (r *Registry) List(q Query) (page []Agent, more bool, total int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	start := 0
	if q.After != "" {
		start = sort.Search(len(r.ids), func(i int) bool { return r.ids[i] > q.After })
	}
	for i, id := range r.ids {
		e := r.agents[id]
		if !matches(e, q) {
			continue
		}
		total++
		if i < start {
			continue
		}
		if len(page) < q.Limit {
			page = append(page, r.snapshot(e))
		} else {
			more = true
		}
	}
	return page, more, total
}

func matches(e *entry, q Query) bool {
	if len(q.States) > 0 {
		found := false
		for _, s := range q.States {
			if e.rec.State == s {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return q.Selector.Matches(e.rec.Labels)
}

// Counts returns how many agents are in each state.
func (r *Registry) Counts() map[string]int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c := map[string]int{store.AgentConnected: 0, store.AgentDisconnected: 0, store.AgentLost: 0}
	for _, e := range r.agents {
		c[e.rec.State]++
	}
	return c
}
