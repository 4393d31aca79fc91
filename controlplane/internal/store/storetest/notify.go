package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// notifyEpoch is a fixed instant the outbox tests count from.
var notifyEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newSubscription(id string, events ...string) store.Subscription {
	return store.Subscription{
		ID: id, Name: "name-" + id, Events: events, SinkKind: store.SinkWebhook, URL: "https://hooks.example.com/" + id,
		Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, CreatedAt: notifyEpoch, CreatedBy: "token:at-1",
		UpdatedAt: notifyEpoch,
	}
}

func mustCreateSubscription(t *testing.T, s store.Store, sub store.Subscription) {
	t.Helper()
	if err := s.CreateSubscription(context.Background(), sub); err != nil {
		t.Fatalf("CreateSubscription(%s): %v", sub.ID, err)
	}
}

func newNotification(id, typ, key string, at time.Time) store.NotificationEvent {
	return store.NotificationEvent{ID: id, Type: typ, OrderKey: key, OccurredAt: at, Body: []byte(`{"id":"` + id + `"}`)}
}

func mustPublish(t *testing.T, s store.Store, ev store.NotificationEvent, want int) {
	t.Helper()
	n, err := s.PublishNotification(context.Background(), ev)
	if err != nil {
		t.Fatalf("PublishNotification(%s): %v", ev.ID, err)
	}
	if n != want {
		t.Fatalf("PublishNotification(%s) queued %d deliveries, want %d", ev.ID, n, want)
	}
}

func claim(t *testing.T, s store.Store, holder string, now time.Time, limit int, exclude ...string) []store.Delivery {
	t.Helper()
	ds, err := s.ClaimDeliveries(context.Background(), store.DeliveryClaim{
		Holder: holder, Now: now, Until: now.Add(time.Minute), Limit: limit, Exclude: exclude,
	})
	if err != nil {
		t.Fatalf("ClaimDeliveries(%s): %v", holder, err)
	}
	return ds
}

func eventIDs(ds []store.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.EventID + "@" + d.SubscriptionID
	}
	return out
}

// wantClaimed fails unless the claimed deliveries are want, in order.
func wantClaimed(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("claimed %v, want %v", got, want)
	}
}

func finish(t *testing.T, s store.Store, d store.Delivery, holder, state string, at, next time.Time) error {
	t.Helper()
	outcome := map[string]string{store.DeliveryDelivered: store.AttemptDelivered, store.DeliveryPending: store.AttemptRetry,
		store.DeliveryDead: store.AttemptDead}[state]
	return s.FinishDelivery(context.Background(), store.DeliveryResult{
		ID: d.ID, Holder: holder, State: state, NextAttemptAt: next,
		Attempt: store.DeliveryAttempt{
			DeliveryID: d.ID, SubscriptionID: d.SubscriptionID, EventID: d.EventID, EventType: d.EventType,
			Attempt: d.Attempts + 1, At: at, Outcome: outcome, HTTPStatus: 503, Error: "sink answered 503", Duration: 25 * time.Millisecond,
		},
	})
}

// testSubscriptions: create, conflict, get, list, update, delete.
func testSubscriptions(t *testing.T, open Opener) {
	s, ctx := open(t), context.Background()
	a := newSubscription("ns-a", "rollout.failed", "agent.lost")
	mustCreateSubscription(t, s, a)
	mustCreateSubscription(t, s, newSubscription("ns-b", "rollout.started"))
	if err := s.CreateSubscription(ctx, a); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateSubscription(existing) = %v, want ErrConflict", err)
	}
	got, err := s.GetSubscription(ctx, "ns-a")
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, got, a)
	a.Events, a.Secrets, a.Paused, a.UpdatedAt = []string{"backup.failed"}, []string{"whsec_b2xk", "whsec_bmV3"}, true, notifyEpoch.Add(time.Hour)
	if err := s.UpdateSubscription(ctx, a); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListSubscriptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "ns-a" || list[1].ID != "ns-b" {
		t.Fatalf("ListSubscriptions = %+v, want ns-a, ns-b", list)
	}
	assertEqual(t, list[0], a)
	if err := s.UpdateSubscription(ctx, newSubscription("ns-none")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateSubscription(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSubscription(ctx, "ns-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSubscription(ctx, "ns-a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSubscription(deleted) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSubscription(ctx, "ns-a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteSubscription(deleted) = %v, want ErrNotFound", err)
	}
}

// testPublishNotification: one delivery per wanting, unpaused
// subscription; an event ID published again queues nothing; Only targets
// one subscription whatever its filter.
func testPublishNotification(t *testing.T, open Opener) {
	s := open(t)
	mustCreateSubscription(t, s, newSubscription("ns-a", "rollout.failed"))
	mustCreateSubscription(t, s, newSubscription("ns-b", "rollout.failed", "agent.lost"))
	paused := newSubscription("ns-c", "rollout.failed")
	paused.Paused = true
	mustCreateSubscription(t, s, paused)
	mustPublish(t, s, newNotification("ev-1", "rollout.failed", "ro-1", notifyEpoch), 2)
	mustPublish(t, s, newNotification("ev-1", "rollout.failed", "ro-1", notifyEpoch), 0)
	mustPublish(t, s, newNotification("ev-2", "agent.lost", "", notifyEpoch), 1)
	mustPublish(t, s, newNotification("ev-3", "backup.failed", "", notifyEpoch), 0)
	test := newNotification("ev-test", "test", "", notifyEpoch)
	test.Only = "ns-a"
	mustPublish(t, s, test, 1)
	ds := claim(t, s, "h1", notifyEpoch, 10)
	wantClaimed(t, eventIDs(ds), []string{"ev-1@ns-a", "ev-1@ns-b", "ev-2@ns-b", "ev-test@ns-a"})
	d := ds[0]
	if d.EventType != "rollout.failed" || d.OrderKey != "ro-1" || string(d.Body) != `{"id":"ev-1"}` || d.Attempts != 0 ||
		!d.OccurredAt.Equal(notifyEpoch) {
		t.Fatalf("claimed delivery = %+v", d)
	}
	q, err := s.PendingDeliveries(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if q.Pending != 4 || !q.Oldest.Equal(notifyEpoch) {
		t.Fatalf("PendingDeliveries = %+v, want 4 from %s", q, notifyEpoch)
	}
}

// testClaimDeliveries: claims exclude claimed, not yet due and excluded
// subscriptions' deliveries; a lapsed claim is claimed again and the old
// holder's finish is fenced; order per key is kept.
func testClaimDeliveries(t *testing.T, open Opener) {
	s := open(t)
	mustCreateSubscription(t, s, newSubscription("ns-a", "rollout.failed", "agent.lost"))
	mustCreateSubscription(t, s, newSubscription("ns-b", "agent.lost"))
	mustPublish(t, s, newNotification("ev-1", "rollout.failed", "ro-1", notifyEpoch), 1)
	mustPublish(t, s, newNotification("ev-2", "rollout.failed", "ro-1", notifyEpoch), 1)
	mustPublish(t, s, newNotification("ev-3", "agent.lost", "", notifyEpoch), 2)
	// ev-2 waits behind ev-1 (same key); ns-b is excluded.
	first := claim(t, s, "h1", notifyEpoch, 10, "ns-b")
	wantClaimed(t, eventIDs(first), []string{"ev-1@ns-a", "ev-3@ns-a"})
	wantClaimed(t, eventIDs(claim(t, s, "h2", notifyEpoch, 10)), []string{"ev-3@ns-b"})
	// Retry ev-1 later: ev-2 still waits behind it.
	if err := finish(t, s, first[0], "h1", store.DeliveryPending, notifyEpoch, notifyEpoch.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	wantClaimed(t, eventIDs(claim(t, s, "h2", notifyEpoch.Add(5*time.Second), 10)), []string{})
	// The claims on ev-3 lapse: h2 takes them again, h1's finish is fenced.
	later := notifyEpoch.Add(2 * time.Minute)
	again := claim(t, s, "h2", later, 10)
	wantClaimed(t, eventIDs(again), []string{"ev-1@ns-a", "ev-3@ns-a", "ev-3@ns-b"})
	if again[0].Attempts != 1 {
		t.Fatalf("ev-1 attempts = %d, want 1", again[0].Attempts)
	}
	if err := finish(t, s, first[1], "h1", store.DeliveryDelivered, later, time.Time{}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("FinishDelivery by a lapsed holder = %v, want ErrFenced", err)
	}
	for _, d := range again {
		if err := finish(t, s, d, "h2", store.DeliveryDelivered, later, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	wantClaimed(t, eventIDs(claim(t, s, "h1", later, 10)), []string{"ev-2@ns-a"})
}

// testReleaseDeliveries: a released claim is claimable at once, with no
// attempt counted; only the holder's own claims are released.
func testReleaseDeliveries(t *testing.T, open Opener) {
	s, ctx := open(t), context.Background()
	mustCreateSubscription(t, s, newSubscription("ns-a", "agent.lost"))
	mustPublish(t, s, newNotification("ev-1", "agent.lost", "", notifyEpoch), 1)
	mustPublish(t, s, newNotification("ev-2", "agent.lost", "", notifyEpoch), 1)
	ds := claim(t, s, "h1", notifyEpoch, 10)
	if err := s.ReleaseDeliveries(ctx, "h2", []int64{ds[0].ID, ds[1].ID}); err != nil {
		t.Fatal(err)
	}
	wantClaimed(t, eventIDs(claim(t, s, "h2", notifyEpoch, 10)), []string{})
	if err := s.ReleaseDeliveries(ctx, "h1", []int64{ds[1].ID}); err != nil {
		t.Fatal(err)
	}
	again := claim(t, s, "h2", notifyEpoch, 10)
	wantClaimed(t, eventIDs(again), []string{"ev-2@ns-a"})
	if again[0].Attempts != 0 {
		t.Fatalf("attempts after a release = %d, want 0", again[0].Attempts)
	}
}

// testDeliveryLog: attempts are listed newest first, pruned to
// MaxAttemptsKept, and a dead delivery no longer holds its key back.
func testDeliveryLog(t *testing.T, open Opener) {
	s, ctx := open(t), context.Background()
	mustCreateSubscription(t, s, newSubscription("ns-a", "rollout.failed"))
	mustPublish(t, s, newNotification("ev-1", "rollout.failed", "ro-1", notifyEpoch), 1)
	mustPublish(t, s, newNotification("ev-2", "rollout.failed", "ro-1", notifyEpoch), 1)
	at := notifyEpoch
	for i := range store.MaxAttemptsKept + 5 {
		ds := claim(t, s, "h1", at, 1)
		if len(ds) != 1 || ds[0].EventID != "ev-1" {
			t.Fatalf("attempt %d claimed %v, want ev-1", i, eventIDs(ds))
		}
		if err := finish(t, s, ds[0], "h1", store.DeliveryPending, at, at); err != nil {
			t.Fatal(err)
		}
		at = at.Add(time.Millisecond)
	}
	ds := claim(t, s, "h1", at, 1)
	if err := finish(t, s, ds[0], "h1", store.DeliveryDead, at, time.Time{}); err != nil {
		t.Fatal(err)
	}
	log, err := s.ListDeliveryAttempts(ctx, "ns-a", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != store.MaxAttemptsKept {
		t.Fatalf("log has %d attempts, want %d", len(log), store.MaxAttemptsKept)
	}
	want := store.DeliveryAttempt{DeliveryID: ds[0].ID, SubscriptionID: "ns-a", EventID: "ev-1", EventType: "rollout.failed",
		Attempt: store.MaxAttemptsKept + 6, At: at, Outcome: store.AttemptDead, HTTPStatus: 503, Error: "sink answered 503",
		Duration: 25 * time.Millisecond}
	assertEqual(t, log[0], want)
	wantClaimed(t, eventIDs(claim(t, s, "h1", at, 10)), []string{"ev-2@ns-a"})
	q, err := s.PendingDeliveries(ctx, "ns-a")
	if err != nil {
		t.Fatal(err)
	}
	if q.Pending != 1 {
		t.Fatalf("pending = %d, want 1", q.Pending)
	}
}

// testPruneNotifications: finished deliveries and their events go, pending
// ones stay; a pruned event ID is not a duplicate any more.
func testPruneNotifications(t *testing.T, open Opener) {
	s, ctx := open(t), context.Background()
	mustCreateSubscription(t, s, newSubscription("ns-a", "agent.lost"))
	mustPublish(t, s, newNotification("ev-1", "agent.lost", "", notifyEpoch), 1)
	mustPublish(t, s, newNotification("ev-2", "agent.lost", "", notifyEpoch), 1)
	ds := claim(t, s, "h1", notifyEpoch, 1)
	if err := finish(t, s, ds[0], "h1", store.DeliveryDelivered, notifyEpoch, time.Time{}); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneNotifications(ctx, notifyEpoch.Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PruneNotifications = %d, %v; want 1", n, err)
	}
	if q, err := s.PendingDeliveries(ctx, ""); err != nil || q.Pending != 1 {
		t.Fatalf("PendingDeliveries = %+v, %v; want 1", q, err)
	}
	mustPublish(t, s, newNotification("ev-2", "agent.lost", "", notifyEpoch), 0)
}

// testClaimDeliveriesRace: holders claiming at once never share a delivery.
func testClaimDeliveriesRace(t *testing.T, open Opener) {
	s := open(t)
	mustCreateSubscription(t, s, newSubscription("ns-a", "agent.lost"))
	const events = 40
	for i := range events {
		mustPublish(t, s, newNotification(fmt.Sprintf("ev-%02d", i), "agent.lost", "", notifyEpoch), 1)
	}
	var mu sync.Mutex
	seen := make(map[int64]string)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for h := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			holder := fmt.Sprintf("h%d", h)
			for {
				ds, err := s.ClaimDeliveries(context.Background(), store.DeliveryClaim{
					Holder: holder, Now: notifyEpoch, Until: notifyEpoch.Add(time.Minute), Limit: 3})
				if err != nil {
					errs <- err
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					if prev, ok := seen[d.ID]; ok {
						errs <- fmt.Errorf("delivery %d claimed by %s and %s", d.ID, prev, holder)
					}
					seen[d.ID] = holder
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != events {
		t.Fatalf("%d deliveries claimed, want %d", len(seen), events)
	}
}
