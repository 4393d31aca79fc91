package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/server"
	"flotilla.dev/controlplane/internal/server/servertest"
)

// Three replicas on one PostgreSQL database: one holds the backup
// scheduler's work lease, and even schedulers ticking on all three at once
// when a slot is due (a deposed holder's last tick) start the policy's run
// once, and then find it in progress.
func TestBackupPolicyRunsOnceAcrossReplicas(t *testing.T) {
	var (
		mu     sync.Mutex
		offset time.Duration
	)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Add(offset)
	}
	r := servertest.StartReplicas(t, 3, servertest.WithClock(now),
		// The loops' own ticks never come within the test: it ticks.
		servertest.WithIntervals(server.Intervals{BackupTick: time.Hour, StatusFlush: 100 * time.Millisecond, FleetRefresh: 100 * time.Millisecond}))
	hs := make([]*harness, len(r.All))
	for i, cp := range r.All {
		hs[i] = harnessOf(t, cp)
	}
	// One replica holds the scheduler's work lease.
	eventually(t, waitFor, "one replica to hold backups/scheduler", func() bool {
		leases, err := r.All[0].Store().LiveLeases(context.Background(), "backups/")
		if err != nil || len(leases) != 1 || leases[0].Name != "backups/scheduler" {
			return false
		}
		for _, cp := range r.All {
			if cp.Server.Holder() == leases[0].Holder {
				return true
			}
		}
		return false
	})
	agent := hs[0].scriptedFleet("bkrep", 1, true)[0]
	everyReplicaShows(t, hs, "every replica to know the agent", map[string]flotillav1.AgentState{agent.id: flotillav1.AgentState_AGENT_STATE_CONNECTED})
	ctx := hs[1].operatorCtx(r.AdminToken())
	bs := flotillav1.NewBackupServiceClient(hs[1].dial(hs[1].serverTLS()))
	if _, err := bs.CreateBackupPolicy(ctx, &flotillav1.CreateBackupPolicyRequest{Policy: &flotillav1.BackupPolicy{
		Name: "hourly", Selector: "fleet=bkrep", Database: "shop", Schedule: "0 * * * *", DrillsDisabled: true}}); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	offset = 2 * time.Hour // two slots passed: one run is owed
	mu.Unlock()
	tickAll := func() {
		var wg sync.WaitGroup
		for i, h := range hs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := h.srv.BackupScheduler().Tick(context.Background()); err != nil {
					t.Errorf("replica %d: tick: %v", i, err)
				}
			}()
		}
		wg.Wait()
	}
	tickAll()
	tickAll()

	runs, err := r.All[0].Store().ListBackupPolicyRuns(context.Background(), "hourly")
	if err != nil || len(runs) != 1 || runs[0].CommandID == "" {
		t.Fatalf("runs = %+v, %v; want one in progress", runs, err)
	}
	list, err := flotillav1.NewFleetServiceClient(hs[2].dial(hs[2].serverTLS())).ListCommands(ctx, &flotillav1.ListCommandsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetCommands()) != 1 || list.GetCommands()[0].GetId() != runs[0].CommandID {
		t.Errorf("commands = %v, want only the run's %s", list.GetCommands(), runs[0].CommandID)
	}
}
