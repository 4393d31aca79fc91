package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// TestArchiveTimeoutSwitchesWithoutCheckpoint: with archive_timeout = 2s
// and checkpoint_timeout = 1h, a server written to every 200 ms archives
// segment after segment without any checkpoint. On PostgreSQL 15 this
// needs the agent: after a start the checkpointer sleeps checkpoint_timeout
// before it first honours archive_timeout, and the agent's heartbeat
// reading (Stats) wakes it with one checkpoint.
func TestArchiveTimeoutSwitchesWithoutCheckpoint(t *testing.T) {
	f := newWALFixture(t, "archive_timeout=2", "checkpoint_timeout=1h")
	for setting, want := range map[string]string{"archive_timeout": "2s", "checkpoint_timeout": "1h",
		"archive_mode": "on", "wal_level": "replica"} {
		if got := f.cluster.QueryString(t, "appdb", "SHOW "+setting); got != want {
			t.Fatalf("SHOW %s = %q, want %q: the settings the test is about are not in force", setting, got, want)
		}
	}
	f.cluster.Exec(t, "appdb", "CREATE TABLE beats (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
	f.exec.Stats(context.Background()) // what every heartbeat does
	// The control file's last checkpoint: pg_stat_bgwriter's counters
	// are flushed later than the checkpoint ends.
	const checkpointQuery = "SELECT checkpoint_lsn::text FROM pg_control_checkpoint()"
	checkpoint := f.cluster.QueryString(t, "appdb", checkpointQuery)
	first := f.cluster.QueryString(t, "appdb", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
	seen := map[string]bool{}
	deadline := time.Now().Add(2 * time.Minute)
	for len(seen) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("archive_timeout = 2s: %d new segments archived in 2 minutes of writes (first %q), want 3; server log:\n%s",
				len(seen), first, f.cluster.ServerLog())
		}
		f.cluster.Exec(t, "appdb", "INSERT INTO beats DEFAULT VALUES")
		if last := f.cluster.QueryString(t, "appdb", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"); last > first {
			seen[last] = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := f.cluster.QueryString(t, "appdb", checkpointQuery); got != checkpoint {
		t.Errorf("the last checkpoint moved from %s to %s while archive_timeout switched segments; want no checkpoint", checkpoint, got)
	}
}

// TestWALContinuityGap: a real archive written by wal-push to S3 is
// continuous in the heartbeat's statistics; with a segment in the middle
// removed from the bucket, the statistics name the missing segment on its
// timeline.
func TestWALContinuityGap(t *testing.T) {
	f := newWALFixture(t)
	f.exec.SetWALCheckInterval(0)
	f.cluster.Exec(t, "appdb", "CREATE TABLE beats (id serial PRIMARY KEY)")
	var segments []string
	for range 4 {
		segments = append(segments, f.cluster.QueryString(t, "appdb", "SELECT pg_walfile_name(pg_current_wal_insert_lsn())"))
		f.cluster.Exec(t, "appdb", "INSERT INTO beats DEFAULT VALUES")
		f.archiveAll(t)
	}
	// The listing runs in the background of the heartbeat's reading: poll
	// until one that started after since is reported.
	timeline := func(since time.Time) *flotillav1.WalTimelineContinuity {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			stats := f.exec.Stats(context.Background())
			if len(stats) != 1 || stats[0].GetWalArchiver() == nil {
				t.Fatalf("Stats = %v, want the archiver's statistics", stats)
			}
			a := stats[0].GetWalArchiver()
			if at := a.GetArchiveCheckedAt(); at != nil && !at.AsTime().Before(since) {
				if a.GetArchiveCheckError() != "" || len(a.GetArchiveTimelines()) != 1 {
					t.Fatalf("archive continuity = %v, want one timeline checked without error", a)
				}
				return a.GetArchiveTimelines()[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("no listing of the archive since %s reported within a minute: %v", since, a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	tl := timeline(time.Now())
	if tl.GetTimeline() != 1 || tl.GetMissingSegments() != 0 || tl.GetArchivedSegments() < 4 || tl.GetFirstSegment() > segments[0] {
		t.Fatalf("continuity of a whole archive = %v, want timeline 1 from %s on, nothing missing", tl, segments[0])
	}
	gone := segments[2]
	if err := os.Remove(filepath.Join(f.s3.Root, "backups", "wal-archive", "wal", "app", gone)); err != nil {
		t.Fatal(err)
	}
	tl = timeline(time.Now())
	if tl.GetMissingSegments() != 1 || len(tl.GetMissing()) != 1 || tl.GetMissing()[0] != gone {
		t.Fatalf("continuity with %s removed = %v, want it missing", gone, tl)
	}
}
