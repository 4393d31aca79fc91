package docker

import (
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/jsonstream"
)

func TestPullTracker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := newPullTracker("app:v2", 500*time.Millisecond)
	msg := func(id, status string, cur, total int64) jsonstream.Message {
		m := jsonstream.Message{ID: id, Status: status}
		if total > 0 {
			m.Progress = &jsonstream.Progress{Current: cur, Total: total}
		}
		return m
	}
	steps := []struct {
		at      time.Duration
		msg     jsonstream.Message
		report  bool
		current uint64
		total   uint64
	}{
		{0, msg("v2", "Pulling from team/app", 0, 0), false, 0, 0},
		{0, msg("aaa", "Pulling fs layer", 0, 0), true, 0, 0},
		{10 * time.Millisecond, msg("bbb", "Already exists", 0, 0), false, 0, 0},
		{20 * time.Millisecond, msg("aaa", "Downloading", 100, 1000), false, 0, 0},
		{600 * time.Millisecond, msg("aaa", "Downloading", 500, 1000), true, 500, 1000},
		{700 * time.Millisecond, msg("ccc", "Extracting", 10, 300), false, 0, 0},
		{1200 * time.Millisecond, msg("aaa", "Pull complete", 0, 0), true, 1300, 1300},
	}
	for i, s := range steps {
		p := tr.update(s.msg, t0.Add(s.at))
		if (p != nil) != s.report {
			t.Fatalf("step %d (%s %s): report %v, want %v", i, s.msg.ID, s.msg.Status, p, s.report)
		}
		if p != nil && (p.Current != s.current || p.Total != s.total) {
			t.Errorf("step %d: %d/%d bytes, want %d/%d", i, p.Current, p.Total, s.current, s.total)
		}
	}
	tr.update(jsonstream.Message{Status: "Digest: sha256:abc"}, t0.Add(2*time.Second))
	if tr.digest != "sha256:abc" {
		t.Errorf("digest %q", tr.digest)
	}
	f := tr.final()
	if !strings.Contains(f.Message, "pulled app:v2 (3 layers)") || f.Current != f.Total {
		t.Errorf("final report %+v", f)
	}
}
