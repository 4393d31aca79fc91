package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// backupEntry is a catalogued backup as ListBackups renders it in JSON.
type backupEntry struct {
	ID        string `json:"id"`
	AgentID   string `json:"agentId"`
	Database  string `json:"database"`
	Policy    string `json:"policy"`
	CommandID string `json:"commandId"`
	SizeBytes string `json:"sizeBytes"`
	SHA256    string `json:"sha256"`
	URI       string `json:"uri"`
	Verified  bool   `json:"verified"`
	LastDrill *struct {
		Succeeded       bool   `json:"succeeded"`
		Message         string `json:"message"`
		RestoreDuration string `json:"restoreDuration"`
	} `json:"lastDrill"`
}

// A backup policy on a minutely schedule, run by the real control plane's
// scheduler as an ordinary fleet command on a real agent that dumps a
// real PostgreSQL database: the backup lands in the catalog under the
// policy, verified, with its checksum and where it is stored, the policy
// shows the run, and a minutely drill restores it into a scratch server
// and records the outcome in the catalog.
func TestBackupPolicyRunsOnSchedule(t *testing.T) {
	pg := fixture.StartPostgres(t)
	pg.Exec(t, "postgres",
		"CREATE ROLE flotilla_backup LOGIN PASSWORD 'e2e-backup-secret'",
		"GRANT pg_read_all_data TO flotilla_backup",
		"CREATE DATABASE shop")
	pg.Exec(t, "shop",
		`CREATE TABLE orders (id int PRIMARY KEY, placed_at timestamptz NOT NULL DEFAULT now())`,
		`INSERT INTO orders SELECT i FROM generate_series(1, 1000) AS i`)

	dir := t.TempDir()
	g := startControlPlane(t, dir).api
	startBackupAgent(t, g, dir, pg)

	var created struct {
		Policy struct {
			BackupStatus struct {
				NextRunAt string `json:"nextRunAt"`
			} `json:"backupStatus"`
		} `json:"policy"`
	}
	g.RPC(t, "flotilla.v1.BackupService/CreateBackupPolicy",
		`{"policy": {"name": "minutely", "selector": "role=db", "database": "shop", "schedule": "* * * * *", "drill_schedule": "* * * * *"}}`, &created)
	if created.Policy.BackupStatus.NextRunAt == "" {
		t.Fatalf("the created policy has no next run: %+v", created)
	}

	// The first slot is within a minute; the scheduler looks every 15 s.
	var got []backupEntry
	fixture.Eventually(t, 150*time.Second, "the scheduled backup to be catalogued", func() error {
		var resp struct {
			Backups []backupEntry `json:"backups"`
		}
		if err := g.Call("flotilla.v1.BackupService/ListBackups", map[string]any{"policy": "minutely"}, &resp); err != nil {
			return err
		}
		if len(resp.Backups) == 0 {
			return fmt.Errorf("no backup yet")
		}
		got = resp.Backups
		return nil
	})
	b := got[0]
	if b.Database != "shop" || !b.Verified || b.SizeBytes == "" || b.SizeBytes == "0" || len(b.SHA256) != 64 ||
		!(strings.HasPrefix(b.URI, "file:///") || strings.HasPrefix(b.URI, "s3://")) || !strings.HasPrefix(b.CommandID, "cmd-") {
		t.Errorf("catalogued backup = %+v", b)
	}
	fixture.Eventually(t, 60*time.Second, "the policy to show the run's success", func() error {
		var resp struct {
			Policy struct {
				BackupStatus struct {
					LastCommandID string `json:"lastCommandId"`
					LastSucceeded bool   `json:"lastSucceeded"`
				} `json:"backupStatus"`
			} `json:"policy"`
		}
		if err := g.Call("flotilla.v1.BackupService/GetBackupPolicy", map[string]any{"name": "minutely"}, &resp); err != nil {
			return err
		}
		if st := resp.Policy.BackupStatus; st.LastCommandID != b.CommandID || !st.LastSucceeded {
			return fmt.Errorf("backup status %+v", st)
		}
		return nil
	})
	// The run is an ordinary fleet command, with the policy as its author.
	fc := g.GetCommand(t, b.CommandID)
	if fc.State != "FLEET_COMMAND_STATE_SUCCEEDED" {
		t.Errorf("the run's command = %+v", fc)
	}
	// A drill (the first may find no backup yet and fail; the next one
	// restores the newest) is recorded against the backup it restored.
	fixture.Eventually(t, 200*time.Second, "a successful drill to be catalogued", func() error {
		var resp struct {
			Backups []backupEntry `json:"backups"`
		}
		if err := g.Call("flotilla.v1.BackupService/ListBackups", map[string]any{"policy": "minutely"}, &resp); err != nil {
			return err
		}
		for _, b := range resp.Backups {
			if d := b.LastDrill; d != nil && d.Succeeded && d.RestoreDuration != "" {
				return nil
			}
		}
		return fmt.Errorf("no successful drill yet: %+v", resp.Backups)
	})
}

// startBackupAgent enrolls an agent (role=db) whose backup.databases has
// pg's shop database, and waits until it is connected.
func startBackupAgent(t *testing.T, g grpcurl.Client, dir string, pg *fixture.Postgres) {
	t.Helper()
	join := g.CreateJoinToken(t, "backup policy e2e", 1)
	secrets := filepath.Join(dir, "secrets")
	fixture.WriteFile(t, filepath.Join(secrets, "join.token"), join.Token+"\n", 0o600)
	fixture.WriteFile(t, filepath.Join(secrets, "shop.pgpass"), "e2e-backup-secret\n", 0o600)
	cfg := fmt.Sprintf(`control_plane:
  address: %s
  ca_sha256: %s
join_token_file: %s
state_dir: %s
hostname: e2e-db-1
labels:
  role: db
heartbeat_interval: 1s
log:
  format: console
backup:
  pg_dump: %s
  pg_restore: %s
  postgres_bin_dir: %s
  databases:
    shop:
      host: 127.0.0.1
      port: %d
      user: flotilla_backup
      dbname: shop
      password_file: %s
      sslmode: disable
`, g.Addr, join.CACertSHA256, filepath.Join(secrets, "join.token"), filepath.Join(dir, "agent"),
		pg.Bin("pg_dump"), pg.Bin("pg_restore"), pg.BinDir, pg.Port, filepath.Join(secrets, "shop.pgpass"))
	path := filepath.Join(dir, "agent.yaml")
	fixture.WriteFile(t, path, cfg, 0o600)
	fixture.StartProcess(t, "agent", fixture.Binary(t, "flotilla-agent"), nil, "-config", path)
	onlyAgentConnected(t, g)
}
