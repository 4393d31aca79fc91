package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// benchHosts returns n queued host commands of fleet command fleetID, with a
// spec about the size of a pull's.
func benchHosts(fleetID string, n int, createdAt time.Time) []store.HostCommand {
	hosts := make([]store.HostCommand, n)
	for i := range hosts {
		hosts[i] = newHostCommand(fleetID, fmt.Sprintf("web-%05d", i), createdAt)
		hosts[i].Spec = make([]byte, 48)
	}
	return hosts
}

// benchCreateFleetCommand10000Hosts measures RunCommand's one write:
// a fleet command and its 10,000 host rows in one transaction.
func benchCreateFleetCommand10000Hosts(b *testing.B, open BenchOpener) {
	const hosts = 10000
	s := open(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("cmd-%d", i)
		i++
		if err := s.CreateFleetCommand(ctx, newFleetCommand(id, t0, 1), benchHosts(id, hosts, t0)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*hosts), "ns/host")
}

// benchUpdateHostCommands measures the write behind a command event:
// the host command's new state, message, result and times.
//
//   - one: one event per transaction, as each event was written on its own;
//   - batch-1000: 1,000 events in one transaction (one fsync), as when
//     the events of many agents arriving together are written at once.
func benchUpdateHostCommands(b *testing.B, open BenchOpener) {
	const hosts = 1000
	s := open(b)
	ctx := context.Background()
	all := benchHosts("cmd-1", hosts, t0)
	mustCreateFleetCommand(b, s, newFleetCommand("cmd-1", t0, 1), all...)
	result := make([]byte, 64) // about a pull's result
	// update sets host i to the state of event n of the sequence an agent
	// sends (accepted, running, succeeded), so that each write changes
	// the row.
	update := func(h *store.HostCommand, n int) {
		now := time.Now()
		h.State = int32(2 + n%3)
		h.Message = fmt.Sprintf("event %d", n)
		h.ReleasedAt, h.Deadline, h.SentAt, h.StartedAt = t0, t0.Add(time.Hour), t0, now
		h.Result = nil
		if n%3 == 2 {
			h.Result, h.FinishedAt = result, now
		}
	}

	b.Run("one", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			h := &all[n%hosts]
			update(h, n/hosts)
			n++
			if err := s.UpdateHostCommands(ctx, []store.HostCommand{*h}, nil, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
	})
	b.Run("batch-1000", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			for i := range all {
				update(&all[i], n)
			}
			n++
			if err := s.UpdateHostCommands(ctx, all, nil, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*hosts), "ns/event")
	})
}
