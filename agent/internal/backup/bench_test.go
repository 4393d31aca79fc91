package backup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/agent/internal/s3test"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/pgtest"
)

// BenchmarkBackupVsPgDump compares, in one run on one machine, a plain
// "pg_dump -Fc > file" with the agent's backup of the same database to a
// real S3 server (dump with table statistics, pg_restore verification,
// upload, read-back and manifest). FLOTILLA_BENCH_DB_MB sizes the
// database (default 64). Reported: MB/s of both and their ratio
// (agent / plain; the target is at least 0.8).
func BenchmarkBackupVsPgDump(b *testing.B) {
	mb := 64
	if v, err := strconv.Atoi(os.Getenv("FLOTILLA_BENCH_DB_MB")); err == nil && v > 0 {
		mb = v
	}
	c := pgtest.Start(b)
	srv := s3test.Start(b, "backups")
	c.Exec(b, "postgres", "CREATE DATABASE benchdb")
	// About 300 bytes a row.
	rows := mb << 20 / 300
	c.Exec(b, "benchdb", `CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, a text, b text, c text, d text)`,
		fmt.Sprintf(`INSERT INTO events SELECT i, now() - i * interval '1 second', md5(i::text), md5((i * 7)::text),
		 md5((i * 13)::text) || md5((i * 17)::text), md5((i * 19)::text) || md5((i * 23)::text) || md5((i * 29)::text)
		 FROM generate_series(1, %d) AS i`, rows))
	size := c.QueryInt(b, "benchdb", "SELECT pg_database_size('benchdb')")
	e, err := New(Config{Directory: b.TempDir(), PgDump: c.Bin("pg_dump"), PgRestore: c.Bin("pg_restore"), S3: srv.Config(),
		Databases: map[string]Database{"bench": {Host: c.SocketDir, Port: c.Port, User: "postgres", DBName: "benchdb", SSLMode: "disable"}},
	}, b.TempDir(), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	dest := &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: "backups"}}}
	out := filepath.Join(b.TempDir(), "plain.dump")
	var plain, agent time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		cmd := exec.Command("sh", "-c", fmt.Sprintf("%s -Fc -h %s -p %d -U postgres benchdb > %s", c.Bin("pg_dump"), c.SocketDir, c.Port, out))
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("pg_dump: %v\n%s", err, o)
		}
		plain += time.Since(start)
		start = time.Now()
		if _, err := e.Execute(context.Background(), &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{
			Backup: &flotillav1.BackupCommand{Database: "bench", Destination: dest}}}, nil); err != nil {
			b.Fatal(err)
		}
		agent += time.Since(start)
	}
	dbMB := float64(size) / (1 << 20)
	b.ReportMetric(dbMB*float64(b.N)/plain.Seconds(), "plain-MB/s")
	b.ReportMetric(dbMB*float64(b.N)/agent.Seconds(), "agent-MB/s")
	b.ReportMetric(plain.Seconds()/agent.Seconds(), "ratio")
	b.ReportMetric(dbMB, "db-MB")
}
