package server_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/notify"
	"flotilla.dev/controlplane/internal/server"
	"flotilla.dev/controlplane/internal/server/servertest"
)

// TestBackupStaleNotified: an hourly policy whose runs cannot start (its
// selector matches no agent) is stale an hour after its first slot; the
// scheduler's ticks publish backup.stale once for the episode, and the
// subscriber receives it.
func TestBackupStaleNotified(t *testing.T) {
	var (
		mu     sync.Mutex
		offset time.Duration
	)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Add(offset)
	}
	h := start(t, fastRetries(), servertest.WithClock(now),
		servertest.WithIntervals(server.Intervals{BackupTick: time.Hour})) // the test ticks
	rx := newReceiver(t, false, false)
	admin := h.operatorCtx(h.admin)
	if _, err := h.notifications().CreateSubscription(admin, webhookSubscription(rx.URL,
		flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_BACKUP_STALE)); err != nil {
		t.Fatal(err)
	}
	bs := flotillav1.NewBackupServiceClient(h.dial(h.serverTLS()))
	if _, err := bs.CreateBackupPolicy(admin, &flotillav1.CreateBackupPolicyRequest{Policy: &flotillav1.BackupPolicy{
		Name: "hourly", Selector: "fleet=nobody", Database: "shop", Schedule: "0 * * * *", DrillsDisabled: true}}); err != nil {
		t.Fatal(err)
	}
	tick := func() {
		if err := h.srv.BackupScheduler().Tick(context.Background()); err != nil {
			t.Fatalf("tick: %v", err)
		}
	}
	tick()
	mu.Lock()
	offset = 3 * time.Hour // the first slot and its hour of grace passed; its run could not start
	mu.Unlock()
	for range 3 {
		tick()
	}
	eventually(t, waitFor, "the backup.stale event to be delivered", func() bool {
		_, got := rx.snapshot()
		return len(got) >= 1
	})
	for range 2 {
		tick()
	}
	time.Sleep(300 * time.Millisecond) // the retries' scale: a second event would have come
	_, got := rx.snapshot()
	if len(got) != 1 {
		t.Fatalf("%d events delivered, want one for the episode", len(got))
	}
	var body notify.Body
	if err := json.Unmarshal(got[0].body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Type != notify.TypeBackupStale || body.Data.Subject["policy"] != "hourly" || body.Data.Subject["database"] != "shop" ||
		body.Data.Reason == "" {
		t.Errorf("event = %+v", body)
	}
}
