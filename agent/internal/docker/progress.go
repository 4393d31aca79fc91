package docker

import (
	"fmt"
	"strings"
	"time"

	"github.com/moby/moby/api/types/jsonstream"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// pullTracker folds the engine's per-layer pull messages into progress
// reports: bytes downloaded over bytes expected across all layers, the
// layer that moved last, and how many layers are complete. It emits at
// most one report per interval, because the engine sends hundreds of
// messages a second and the command stream only needs the latest.
type pullTracker struct {
	image    string
	interval time.Duration
	layers   map[string]*layerProgress
	order    []string // layer IDs in the order first seen
	last     time.Time
	latest   string // the layer of the last message
	digest   string // "sha256:…" from the stream's "Digest:" line
}

type layerProgress struct {
	status         string
	current, total int64
	done           bool
}

func newPullTracker(image string, interval time.Duration) *pullTracker {
	return &pullTracker{image: image, interval: interval, layers: make(map[string]*layerProgress)}
}

// layerStatuses are the statuses the engine gives layers; other messages
// with an ID ("Pulling from …" carries the tag) are not about a layer.
var layerStatuses = map[string]bool{
	"Pulling fs layer": true, "Waiting": true, "Downloading": true,
	"Verifying Checksum": true, "Download complete": true,
	"Extracting": true, "Pull complete": true, "Already exists": true,
	"Retrying": true,
}

// update records msg and returns a report when one is due at now.
func (t *pullTracker) update(msg jsonstream.Message, now time.Time) *flotillav1.CommandProgress {
	if d, ok := strings.CutPrefix(msg.Status, "Digest: "); ok {
		t.digest = strings.TrimSpace(d)
	}
	status := msg.Status
	if strings.HasPrefix(status, "Retrying") {
		status = "Retrying"
	}
	if msg.ID == "" || !layerStatuses[status] {
		return nil
	}
	l := t.layer(msg.ID)
	l.status = msg.Status
	switch status {
	case "Downloading":
		if p := msg.Progress; p != nil {
			l.current, l.total = p.Current, p.Total
		}
	case "Extracting":
		// Downloaded; extraction is local work. A layer that came in one
		// read had no "Downloading" message: its size shows here.
		if p := msg.Progress; p != nil && p.Total > l.total {
			l.total = p.Total
		}
		l.current = l.total
	case "Verifying Checksum", "Download complete":
		l.current = l.total
	case "Pull complete", "Already exists":
		l.current, l.done = l.total, true
	}
	t.latest = msg.ID
	if !t.last.IsZero() && now.Sub(t.last) < t.interval {
		return nil
	}
	t.last = now
	return t.report()
}

func (t *pullTracker) layer(id string) *layerProgress {
	l, ok := t.layers[id]
	if !ok {
		l = &layerProgress{}
		t.layers[id] = l
		t.order = append(t.order, id)
	}
	return l
}

// report sums the layers into one progress report.
func (t *pullTracker) report() *flotillav1.CommandProgress {
	var current, total int64
	done := 0
	for _, id := range t.order {
		l := t.layers[id]
		current += l.current
		total += l.total
		if l.done {
			done++
		}
	}
	msg := fmt.Sprintf("pulling %s: %d of %d layers complete", t.image, done, len(t.order))
	if l, ok := t.layers[t.latest]; ok {
		msg += fmt.Sprintf("; layer %s: %s", t.latest, l.status)
	}
	return &flotillav1.CommandProgress{Message: msg, Current: nonNegative(current), Total: nonNegative(total)}
}

// final is the report sent once the stream ended without error.
func (t *pullTracker) final() *flotillav1.CommandProgress {
	p := t.report()
	p.Message = fmt.Sprintf("pulled %s (%d layers)", t.image, len(t.order))
	if p.Total > 0 {
		p.Current = p.Total
	}
	return p
}

func nonNegative(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}
