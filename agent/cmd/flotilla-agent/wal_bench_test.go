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

// BenchmarkArchiveRPO measures, with archive_timeout = 60s and a quiet
// server, how long a committed row waits before the segment holding it is
// archived: the RPO of WAL archiving. Reported in seconds.
func BenchmarkArchiveRPO(b *testing.B) {
	f := newWALFixture(b, "archive_timeout=60")
	f.cluster.Exec(b, "appdb", "CREATE TABLE beats (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
	f.archiveAll(b)
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		written := time.Now()
		lsn := f.cluster.QueryString(b, "appdb", "INSERT INTO beats DEFAULT VALUES RETURNING pg_walfile_name(pg_current_wal_insert_lsn())")
		for f.cluster.QueryString(b, "appdb", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < lsn {
			if time.Since(written) > 10*time.Minute {
				b.Fatalf("segment %s not archived 10 minutes after the write: archive_timeout did not switch WAL", lsn)
			}
			time.Sleep(200 * time.Millisecond)
		}
		total += time.Since(written)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "rpo-s")
}
