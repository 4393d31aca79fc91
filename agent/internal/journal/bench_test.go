package journal

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// BenchmarkCommandLifecycle is what the journal costs one command on the
// agent: Begin (ACCEPTED), RUNNING, one progress event and the outcome,
// each its own fsynced transaction. The journal lives in b.TempDir(); set
// TMPDIR to a disk to include its fsync, to a tmpfs to measure the
// journal's own CPU (what the simulator's thousands of agents pay).
func BenchmarkCommandLifecycle(b *testing.B) {
	clock := clockwork.NewFakeClockAt(epoch)
	j, err := Open(filepath.Join(b.TempDir(), FileName), Options{Clock: clock, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("cmd-%d", i)
		i++
		if _, _, err := j.Begin(pull(id), event(id, accepted, "accepted")); err != nil {
			b.Fatal(err)
		}
		for _, ev := range []*flotillav1.CommandEvent{
			event(id, running, "running"), event(id, running, "layer 1 of 3"), event(id, succeeded, "pulled"),
		} {
			if _, err := j.Update(id, ev); err != nil {
				b.Fatal(err)
			}
		}
	}
}
