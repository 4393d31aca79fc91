package postgres

import (
	"context"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// waitWake fails unless wake receives within a generous deadline.
func waitWake(t *testing.T, wake <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-wake:
	case <-time.After(30 * time.Second):
		t.Fatalf("no wake-up %s", what)
	}
}

// drain empties a coalesced wake-up channel.
func drain(wake <-chan struct{}) {
	select {
	case <-wake:
	default:
	}
}

// TestFeedWakesOnCommitAndAfterReconnect: a write on one store wakes a
// subscriber of another on the same database (two replicas), at commit;
// killing the feed's connection makes it reconnect and wake everyone.
func TestFeedWakesOnCommitAndAfterReconnect(t *testing.T) {
	dsn := freshDSN(t)
	writer, reader := openTestStoreAt(t, dsn), openTestStoreAt(t, dsn)
	ctx := context.Background()
	if store.FeedOf(reader) == nil {
		t.Fatal("FeedOf(postgres store) = nil")
	}
	cmds, stop := store.FeedOf(reader).Subscribe(store.TopicCommands)
	defer stop()
	reports, stopReports := store.FeedOf(reader).Subscribe(store.TopicReports)
	defer stopReports()
	waitWake(t, cmds, "after the first LISTEN")
	drain(reports)

	hc := store.HostCommand{ID: "cmd-1.a", FleetCommandID: "cmd-1", AgentID: "a", Kind: "restart", Spec: []byte{1}, State: 1, CreatedAt: time.Now()}
	if err := writer.CreateFleetCommand(ctx, store.FleetCommand{ID: "cmd-1", Kind: "restart", Request: []byte{1}, State: 1, CreatedAt: time.Now()},
		[]store.HostCommand{hc}); err != nil {
		t.Fatal(err)
	}
	waitWake(t, cmds, "after a host command was created on another store")
	hc.CancelReason = "stop"
	if err := writer.UpdateHostCommands(ctx, []store.HostCommand{hc}, nil, nil); err != nil {
		t.Fatal(err)
	}
	waitWake(t, cmds, "after a host command was updated on another store")
	if err := writer.AddCommandReports(ctx, []store.CommandReport{{CommandID: hc.ID, AgentID: "a", Event: []byte{1}, ReceivedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	waitWake(t, reports, "after a report was added on another store")

	drain(cmds)
	var killed int
	err := writer.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
		FeedApplicationName).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminating the feed's connection: killed %d, %v; want 1", killed, err)
	}
	waitWake(t, cmds, "after the feed's connection was killed (reconnect)")
}

// TestFeedClose: closing the store ends the feed's connection.
func TestFeedClose(t *testing.T) {
	s, err := Open(context.Background(), Config{DSN: freshDSN(t)})
	if err != nil {
		t.Fatal(err)
	}
	wake, _ := s.Feed().Subscribe(store.TopicCommands)
	waitWake(t, wake, "after the first LISTEN")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.feed.done:
	default:
		t.Fatal("feed still running after Close")
	}
}
