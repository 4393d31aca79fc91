package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

func remediationEvent(id, service, agent, action string, at time.Time) store.Remediation {
	return store.Remediation{ID: id, Service: service, AgentID: agent, Action: action, Reason: "threshold",
		Evidence: "working set 90.0 MiB above 80.0 MiB for 10s", RolloutID: "ro-" + id, OccurredAt: at}
}

// testRemediations: events round-trip, list newest first with filters,
// a repeated ID is not added twice, writes are fenced, deletes remove.
func testRemediations(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	evs := []store.Remediation{
		remediationEvent("r1", "web", "a1", store.RemediationRestart, t0),
		remediationEvent("r2", "web", "a2", store.RemediationRestart, t0.Add(time.Minute)),
		remediationEvent("r3", "web", "a1", store.RemediationEscalation, t0.Add(2*time.Minute)),
		remediationEvent("r4", "api", "a1", store.RemediationOOMKill, t0.Add(3*time.Minute)),
	}
	for _, ev := range evs {
		if added, err := s.AddRemediation(ctx, ev, nil); err != nil || !added {
			t.Fatalf("AddRemediation(%s) = %v, %v", ev.ID, added, err)
		}
	}
	again := evs[0]
	again.Evidence = "changed"
	if added, err := s.AddRemediation(ctx, again, nil); err != nil || added {
		t.Fatalf("AddRemediation of a stored ID = %v, %v; want not added", added, err)
	}
	ids := func(q store.RemediationQuery) string {
		t.Helper()
		list, err := s.ListRemediations(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(remediationIDs(list))
	}
	for _, tc := range []struct {
		name string
		q    store.RemediationQuery
		want string
	}{
		{"all, newest first", store.RemediationQuery{}, "[r4 r3 r2 r1]"},
		{"service", store.RemediationQuery{Service: "web"}, "[r3 r2 r1]"},
		{"agent and action", store.RemediationQuery{AgentID: "a1", Action: store.RemediationRestart}, "[r1]"},
		{"since", store.RemediationQuery{Service: "web", Since: t0.Add(time.Minute)}, "[r3 r2]"},
		{"limit", store.RemediationQuery{Limit: 2}, "[r4 r3]"},
	} {
		if got := ids(tc.q); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	list, err := s.ListRemediations(ctx, store.RemediationQuery{AgentID: "a1", Action: store.RemediationRestart})
	if err != nil || len(list) != 1 || !sameRemediation(list[0], evs[0]) {
		t.Fatalf("round trip: %+v (%v), want %+v", list, err, evs[0])
	}
	testRemediationsFenced(t, s)
}

func testRemediationsFenced(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := mustAcquire(t, s, "remediation/driver", "a", time.Minute)
	stale := store.Fence{Name: a.Name, Holder: a.Holder, Token: a.Token + 1}
	if _, err := s.AddRemediation(ctx, remediationEvent("r5", "web", "a1", store.RemediationRestart, t0), &stale); !errors.Is(err, store.ErrFenced) {
		t.Errorf("AddRemediation under another token = %v, want ErrFenced", err)
	}
	if err := s.DeleteRemediation(ctx, "r1", &stale); !errors.Is(err, store.ErrFenced) {
		t.Errorf("DeleteRemediation under another token = %v, want ErrFenced", err)
	}
	if added, err := s.AddRemediation(ctx, remediationEvent("r6", "web", "a1", store.RemediationRestart, t0), store.FenceOf(a)); err != nil || !added {
		t.Errorf("AddRemediation under the lease = %v, %v", added, err)
	}
	if err := s.DeleteRemediation(ctx, "r1", store.FenceOf(a)); err != nil {
		t.Errorf("DeleteRemediation under the lease = %v", err)
	}
	if err := s.DeleteRemediation(ctx, "no-such", nil); err != nil {
		t.Errorf("DeleteRemediation of an unknown ID = %v", err)
	}
	list, err := s.ListRemediations(ctx, store.RemediationQuery{Service: "web", Action: store.RemediationRestart})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(remediationIDs(list)); got != "[r2 r6]" {
		t.Errorf("restarts after the fenced writes: %s, want [r2 r6]", got)
	}
}

func sameRemediation(a, b store.Remediation) bool {
	at, bt := a.OccurredAt, b.OccurredAt
	a.OccurredAt, b.OccurredAt = time.Time{}, time.Time{}
	return a == b && at.Equal(bt)
}

func remediationIDs(list []store.Remediation) []string {
	var out []string
	for _, r := range list {
		out = append(out, r.ID)
	}
	return out
}
