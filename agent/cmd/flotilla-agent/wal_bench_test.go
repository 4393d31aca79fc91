package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/pgtest"
)

// BenchmarkPointInTimeRestore measures a point-in-time restore ("latest")
// of a database of FLOTILLA_BENCH_DB_MB megabytes (default 64) whose base
// backup and WAL are on a real S3 server: download, unpack, WAL replay and
// promotion. Reported: the restore's seconds and MB/s.
func BenchmarkPointInTimeRestore(b *testing.B) {
	mb := 64
	if v, err := strconv.Atoi(os.Getenv("FLOTILLA_BENCH_DB_MB")); err == nil && v > 0 {
		mb = v
	}
	f := newWALFixture(b, "max_wal_size=4GB")
	f.cluster.Exec(b, "appdb", `CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, a text, b text, c text, d text)`)
	if _, err := f.exec.Execute(context.Background(), &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_BaseBackup{
		BaseBackup: &flotillav1.BaseBackupCommand{Database: "app", Destination: f.dest}}}, nil); err != nil {
		b.Fatal(err)
	}
	// Written after the base backup: the restore replays all of it from WAL.
	// In batches: each statement has the fixture's time limit.
	const batch = 200_000
	for from := 1; from <= mb<<20/300; from += batch {
		f.cluster.Exec(b, "appdb", fmt.Sprintf(`INSERT INTO events SELECT i, now(), md5(i::text), md5((i * 7)::text),
		 md5((i * 13)::text) || md5((i * 17)::text), md5((i * 19)::text) || md5((i * 23)::text) || md5((i * 29)::text)
		 FROM generate_series(%d, %d) AS i`, from, from+batch-1))
	}
	size := f.cluster.QueryInt(b, "appdb", "SELECT pg_database_size('appdb')")
	f.archiveAll(b)
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		port, err := pgtest.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		dataDir := filepath.Join(sharedDir(b), "restored")
		res, err := f.exec.Execute(context.Background(), &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{Restore: &flotillav1.RestoreCommand{
			Database: "app", Destination: f.dest,
			Target: &flotillav1.RestoreCommand_PointInTime{PointInTime: &flotillav1.PointInTimeTarget{
				TargetTime: "latest", DataDirectory: dataDir, Port: uint32(port)}}}}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += res.GetRestore().GetDuration().AsDuration()
		stopRestored(f, dataDir)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "restore-s")
	b.ReportMetric(float64(size)/(1<<20), "db-MB")
	b.ReportMetric(float64(size)/(1<<20)*float64(b.N)/total.Seconds(), "MB/s")
}

// BenchmarkArchiveRPO measures the RPO of WAL archiving with
// archive_timeout = 60s (FLOTILLA_BENCH_ARCHIVE_TIMEOUT seconds): a row is
// written every second for FLOTILLA_BENCH_RPO_MINUTES minutes (default 4),
// and every second the age of the newest row the archive could restore
// (its commit in a segment already archived) is read. Reported: the worst
// and mean of that age, and the worst age of the last archived segment
// (pg_stat_archiver.last_archived_time, what the agent reports), in
// seconds. The server is started fresh, as after a restart, and the
// agent's heartbeat reading runs once first (see wakeArchiveTimeout).
func BenchmarkArchiveRPO(b *testing.B) {
	timeout, minutes := 60, 4
	if v, err := strconv.Atoi(os.Getenv("FLOTILLA_BENCH_ARCHIVE_TIMEOUT")); err == nil && v > 0 {
		timeout = v
	}
	if v, err := strconv.Atoi(os.Getenv("FLOTILLA_BENCH_RPO_MINUTES")); err == nil && v > 0 {
		minutes = v
	}
	f := newWALFixture(b, fmt.Sprintf("archive_timeout=%d", timeout))
	f.cluster.Exec(b, "appdb", "CREATE TABLE beats (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
	f.exec.Stats(context.Background())
	b.ResetTimer()
	for range b.N {
		worst, mean, segAge := measureRPO(b, f, time.Duration(minutes)*time.Minute, time.Duration(timeout)*time.Second)
		b.ReportMetric(worst.Seconds(), "worst-rpo-s")
		b.ReportMetric(mean.Seconds(), "mean-rpo-s")
		b.ReportMetric(segAge.Seconds(), "worst-segment-age-s")
	}
}

// measureRPO writes a row a second for span and returns the worst and mean
// age of the newest archived row and the worst age of the last archived
// segment, sampled once a second after the first timeout (before it the
// archive holds no row yet).
func measureRPO(b *testing.B, f *walFixture, span, timeout time.Duration) (worst, mean, segAge time.Duration) {
	type row struct {
		at      time.Time
		segment string // the segment holding the commit, or a later one
	}
	var rows []row
	var sum time.Duration
	samples := 0
	start := time.Now()
	for tick := time.NewTicker(time.Second); time.Since(start) < span; <-tick.C {
		f.cluster.Exec(b, "appdb", "INSERT INTO beats DEFAULT VALUES")
		rows = append(rows, row{time.Now(), f.cluster.QueryString(b, "appdb", "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")})
		last := f.cluster.QueryString(b, "appdb", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		lastAt := f.cluster.QueryString(b, "appdb", "SELECT coalesce(extract(epoch FROM now() - last_archived_time)::text, '0') FROM pg_stat_archiver")
		if time.Since(start) < timeout+5*time.Second {
			continue
		}
		newest := start
		for _, r := range rows {
			if r.segment <= last {
				newest = r.at
			}
		}
		age := time.Since(newest)
		worst = max(worst, age)
		sum += age
		samples++
		if s, err := strconv.ParseFloat(lastAt, 64); err == nil {
			segAge = max(segAge, time.Duration(s*float64(time.Second)))
		}
	}
	if samples == 0 {
		b.Fatalf("no sample in %s: the span must exceed archive_timeout (%s) by some seconds", span, timeout)
	}
	return worst, sum / time.Duration(samples), segAge
}
