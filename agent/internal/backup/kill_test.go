package backup

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"flotilla.dev/agent/internal/s3test"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/pgtest"
)

// killHelperEnv carries the helper's configuration (JSON) to the re-run
// test binary.
const killHelperEnv = "FLOTILLA_BACKUP_KILL_HELPER"

// TestKillMidUploadCataloguesNothing runs a backup to S3 in a child
// process, through a proxy that stops forwarding once part of the archive
// went through, and kills the child with SIGKILL there: the destination
// then has no archive under its name and no manifest, so nothing is
// catalogued, and a prune (the catalog's reader) lists nothing.
func TestKillMidUploadCataloguesNothing(t *testing.T) {
	if os.Getenv(killHelperEnv) != "" {
		return // the helper's own run of the test list
	}
	c := pgtest.Start(t)
	srv := s3test.Start(t, "backups")
	c.Exec(t, "postgres", "CREATE DATABASE bigdb")
	// Random text compresses badly: a few MB of archive.
	c.Exec(t, "bigdb", `CREATE TABLE blobs (id int PRIMARY KEY, data text)`,
		`INSERT INTO blobs SELECT i, string_agg(md5(random()::text), '') FROM generate_series(1, 4000) AS i, generate_series(1, 32) GROUP BY i`)
	proxy := newStallingProxy(t, srv.Endpoint, 1<<20)
	cfg := Config{
		Directory: filepath.Join(t.TempDir(), "backups"), PgDump: c.Bin("pg_dump"), PgRestore: c.Bin("pg_restore"),
		S3:        srv.Config(),
		Databases: map[string]Database{"big": {Host: c.SocketDir, Port: c.Port, User: "postgres", DBName: "bigdb", SSLMode: "disable"}},
	}
	cfg.S3.Endpoint = proxy.addr
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillMidUploadHelper$")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+string(raw))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-proxy.stalled: // the upload is under way and part of it went through
	case err := <-exited:
		t.Fatalf("the helper ended (%v) before its upload stalled", err)
	}
	_ = cmd.Process.Kill()
	<-exited
	proxy.release()

	store := srv.Store(t, "backups", "")
	objs, err := store.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 0 {
		t.Fatalf("objects after kill -9 mid-upload: %+v; want none", objs)
	}
	// The restarted agent finds nothing to restore and nothing catalogued.
	e, err := New(Config{Directory: cfg.Directory, PgDump: cfg.PgDump, PgRestore: cfg.PgRestore, S3: srv.Config(), Databases: cfg.Databases},
		t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	dest := &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: "backups"}}}
	res, err := e.Execute(context.Background(), &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Prune{Prune: &flotillav1.PruneCommand{
		Database: "big", Destination: dest, DryRun: true, Retention: &flotillav1.RetentionRules{KeepLast: 1}}}}, nil)
	if err != nil || len(res.GetPrune().GetKept())+len(res.GetPrune().GetDeleted()) != 0 {
		t.Fatalf("the catalog after kill -9 = %v, %v; want empty", res, err)
	}
	if _, err := e.Execute(context.Background(), restoreSpec("big", "", "big_restored", false, dest), nil); err == nil ||
		!strings.Contains(err.Error(), "no dump backup of database big") {
		t.Errorf("restore after kill -9 = %v, want no backup to restore", err)
	}
	// The killed agent's working file was removed at the restart.
	if left, _ := filepath.Glob(filepath.Join(cfg.Directory, "*.partial")); len(left) != 0 {
		t.Errorf("working files left after the restart: %v", left)
	}
}

// TestKillMidUploadHelper is the agent TestKillMidUploadCataloguesNothing
// kills: it backs up "big" to S3 through the stalling proxy.
func TestKillMidUploadHelper(t *testing.T) {
	raw := os.Getenv(killHelperEnv)
	if raw == "" {
		t.Skip("helper process of TestKillMidUploadCataloguesNothing")
	}
	var cfg Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg, t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	dest := &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: "backups"}}}
	_, err = e.Execute(context.Background(), &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{
		Backup: &flotillav1.BackupCommand{Database: "big", Destination: dest}}}, nil)
	t.Fatalf("the backup returned (%v); it should have been killed mid-upload", err)
}

// stallingProxy forwards TCP connections to a server until more than limit
// bytes of request bodies went through one connection, then stops
// forwarding (the client's upload hangs) and closes stalled.
type stallingProxy struct {
	addr    string
	stalled chan struct{}
	stop    chan struct{}
	once    sync.Once
}

func newStallingProxy(t *testing.T, target string, limit int64) *stallingProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallingProxy{addr: l.Addr().String(), stalled: make(chan struct{}), stop: make(chan struct{})}
	t.Cleanup(func() { p.release(); _ = l.Close() })
	go func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(client, target, limit)
		}
	}()
	return p
}

func (p *stallingProxy) serve(client net.Conn, target string, limit int64) {
	defer client.Close()
	server, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer server.Close()
	go func() { _, _ = io.Copy(client, server) }()
	r := bufio.NewReader(client)
	var n int64
	buf := make([]byte, 32<<10)
	for {
		k, err := r.Read(buf)
		if k > 0 {
			n += int64(k)
			if n > limit {
				p.once.Do(func() { close(p.stalled) })
				<-p.stop
				return
			}
			if _, werr := server.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// release lets stalled connections end.
func (p *stallingProxy) release() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
}
