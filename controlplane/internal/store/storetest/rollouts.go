package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

func mustPutService(t *testing.T, s store.Store, name string, at time.Time) store.Service {
	t.Helper()
	svc, err := s.PutService(context.Background(), store.Service{Name: name, Spec: []byte("spec-" + name), CreatedAt: at, UpdatedAt: at})
	if err != nil {
		t.Fatalf("PutService(%q): %v", name, err)
	}
	return svc
}

func testRollout(id, service string, created time.Time) store.Rollout {
	return store.Rollout{
		ID: id, Service: service, Image: "registry.example/app:1.2", CreatedBy: "operator:t", Definition: []byte("def"),
		ServiceSpec: []byte("svc"), LoadBalancers: []string{"lb-1", "lb-2"}, State: 1, Message: "preparing",
		StopState: 5, CreatedAt: created,
	}
}

func testHosts(rolloutID string, ids ...string) []store.RolloutHost {
	out := make([]store.RolloutHost, len(ids))
	for i, id := range ids {
		out[i] = store.RolloutHost{RolloutID: rolloutID, AgentID: id, Batch: len(ids) - 1 - i, Step: 1,
			ObservedImage: "registry.example/app:1.1", Server: "10.0.0.1:8080"}
	}
	return out
}

func event(payload string, at time.Time) store.RolloutEvent {
	return store.RolloutEvent{At: at, Event: []byte(payload)}
}

func testServices(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	mustPutService(t, s, "web", t0)
	mustPutService(t, s, "api", t0)
	// Replacing keeps the creation time and takes the new spec and update time.
	got, err := s.PutService(ctx, store.Service{Name: "web", Spec: []byte("v2"), CreatedAt: t0.Add(time.Hour), UpdatedAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want := store.Service{Name: "web", Spec: []byte("v2"), CreatedAt: t0, UpdatedAt: t0.Add(time.Hour)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PutService = %+v, want %+v", got, want)
	}
	if g, err := s.GetService(ctx, "web"); err != nil || !reflect.DeepEqual(g, want) {
		t.Fatalf("GetService = %+v, %v", g, err)
	}
	if _, err := s.GetService(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetService(nope) = %v, want ErrNotFound", err)
	}
	list, err := s.ListServices(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "api" || list[1].Name != "web" {
		t.Fatalf("ListServices = %+v, %v", list, err)
	}
}

func testRolloutLifecycle(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	mustPutService(t, s, "web", t0)
	r := testRollout("ro-1", "web", t0)
	evs, err := s.CreateRollout(ctx, r, testHosts("ro-1", "web-a", "web-b"), []store.RolloutEvent{event("created", t0)})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Sequence != 1 || evs[0].RolloutID != "ro-1" {
		t.Fatalf("CreateRollout events = %+v", evs)
	}
	got, err := s.GetRollout(ctx, "ro-1")
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("GetRollout = %+v, %v; want %+v", got, err, r)
	}

	// A second active rollout of the service is refused, naming the first.
	_, err = s.CreateRollout(ctx, testRollout("ro-2", "web", t0.Add(time.Second)), nil, nil)
	var active *store.ActiveRolloutError
	if !errors.As(err, &active) || active.RolloutID != "ro-1" || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateRollout = %v, want an ActiveRolloutError naming ro-1", err)
	}

	// One transition: progress, a host, two events and a command together.
	r.State, r.Message, r.CurrentBatch, r.Prepared, r.BatchStartedAt = 2, "running", 1, true, t0.Add(time.Minute)
	// The analysis in progress and the bake's end go with the progress.
	r.BakeUntil, r.Analysis = t0.Add(6*time.Minute), []byte{8, 1, 16, 2}
	// A deploy window's pause keeps when it resumes (issue 15).
	r.ResumeAt = t0.Add(72 * time.Hour)
	h := testHosts("ro-1", "web-a")[0]
	h.Batch, h.Step, h.Changed, h.PreviousImage, h.StepStartedAt = 1, 4, true, "registry.example/app:1.1", t0.Add(time.Minute)
	h.HealthySince = t0.Add(90 * time.Second)
	cmd := store.HostCommand{ID: "ro-1.web-a.restart", AgentID: "web-a", Kind: "restart", Spec: []byte{1}, State: 1, Message: "queued", CreatedAt: t0}
	evs, err = s.UpdateRollout(ctx, store.RolloutUpdate{RolloutID: "ro-1", Rollout: &r, Hosts: []store.RolloutHost{h},
		Events: []store.RolloutEvent{event("a", t0), event("b", t0)}, Commands: []store.HostCommand{cmd}})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Sequence != 2 || evs[1].Sequence != 3 {
		t.Fatalf("UpdateRollout events = %+v", evs)
	}
	if got, _ := s.GetRollout(ctx, "ro-1"); !reflect.DeepEqual(got, r) {
		t.Fatalf("after update = %+v, want %+v", got, r)
	}
	hosts, err := s.ListRolloutHosts(ctx, "ro-1")
	if err != nil || len(hosts) != 2 || hosts[0].AgentID != "web-b" || !reflect.DeepEqual(hosts[1], h) {
		t.Fatalf("ListRolloutHosts = %+v, %v", hosts, err)
	}
	if _, err := s.GetHostCommand(ctx, cmd.ID); err != nil {
		t.Fatalf("command not stored with the transition: %v", err)
	}

	// A transition whose command exists is refused whole.
	_, err = s.UpdateRollout(ctx, store.RolloutUpdate{RolloutID: "ro-1", Hosts: []store.RolloutHost{testHosts("ro-1", "web-b")[0]},
		Events: []store.RolloutEvent{event("c", t0)}, Commands: []store.HostCommand{cmd}})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate command = %v, want ErrConflict", err)
	}
	all, err := s.ListRolloutEvents(ctx, "ro-1", 0, 0)
	if err != nil || len(all) != 3 || string(all[2].Event) != "b" {
		t.Fatalf("events after refused transition = %+v, %v", all, err)
	}
	if page, _ := s.ListRolloutEvents(ctx, "ro-1", 1, 1); len(page) != 1 || page[0].Sequence != 2 {
		t.Fatalf("ListRolloutEvents(after 1, limit 1) = %+v", page)
	}

	testRolloutFinish(t, s, r)
}

// testRolloutFinish ends rollout r of testRolloutLifecycle: finishing frees
// the service, and a finished rollout cannot move again.
func testRolloutFinish(t *testing.T, s store.Store, r store.Rollout) {
	ctx := context.Background()
	r.State, r.FinishedAt, r.ResumeAt = 4, t0.Add(time.Hour), time.Time{}
	if _, err := s.UpdateRollout(ctx, store.RolloutUpdate{RolloutID: "ro-1", Rollout: &r}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetRollout(ctx, "ro-1"); !reflect.DeepEqual(got, r) {
		t.Fatalf("after finish = %+v, want %+v (the window's resume cleared)", got, r)
	}
	if _, err := s.UpdateRollout(ctx, store.RolloutUpdate{RolloutID: "ro-1", Rollout: &r}); !errors.Is(err, store.ErrRolloutFinished) {
		t.Fatalf("update after finish = %v, want ErrRolloutFinished", err)
	}
	if _, err := s.UpdateRollout(ctx, store.RolloutUpdate{RolloutID: "nope"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update unknown = %v, want ErrNotFound", err)
	}
	if _, err := s.CreateRollout(ctx, testRollout("ro-2", "web", t0.Add(time.Second)), nil, nil); err != nil {
		t.Fatalf("CreateRollout after the first finished: %v", err)
	}
	if _, err := s.CreateRollout(ctx, testRollout("ro-2", "web", t0), nil, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate ID = %v, want ErrConflict", err)
	}
}

// testRolloutWithoutLoadBalancers stores a rollout with no load balancer
// (a nil list, as the engine makes for a service without one) and reads it
// back with a nil list.
func testRolloutWithoutLoadBalancers(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	mustPutService(t, s, "web", t0)
	r := testRollout("ro-1", "web", t0)
	r.LoadBalancers = nil
	if _, err := s.CreateRollout(ctx, r, testHosts("ro-1", "web-a"), nil); err != nil {
		t.Fatalf("CreateRollout without load balancers: %v", err)
	}
	got, err := s.GetRollout(ctx, "ro-1")
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("GetRollout = %+v, %v; want %+v", got, err, r)
	}
}

func testListRollouts(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	mustPutService(t, s, "web", t0)
	mustPutService(t, s, "api", t0)
	for i := range 5 {
		svc := "web"
		if i%2 == 1 {
			svc = "api"
		}
		r := testRollout(fmt.Sprintf("ro-%d", i), svc, t0.Add(time.Duration(i)*time.Minute))
		if i < 3 {
			r.State, r.FinishedAt = 4, t0.Add(time.Hour)
		}
		if _, err := s.CreateRollout(ctx, r, nil, nil); err != nil {
			t.Fatalf("CreateRollout %d: %v", i, err)
		}
	}
	ids := func(rs []store.Rollout) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	tests := []struct {
		name string
		q    store.RolloutQuery
		want []string
	}{
		{"all newest first", store.RolloutQuery{}, []string{"ro-4", "ro-3", "ro-2", "ro-1", "ro-0"}},
		{"by service", store.RolloutQuery{Service: "web"}, []string{"ro-4", "ro-2", "ro-0"}},
		{"by state", store.RolloutQuery{States: []int32{1}}, []string{"ro-4", "ro-3"}},
		{"active", store.RolloutQuery{Active: true, Service: "api"}, []string{"ro-3"}},
		{"page", store.RolloutQuery{Before: "ro-3", Limit: 2}, []string{"ro-2", "ro-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListRollouts(ctx, tt.q)
			if err != nil || !reflect.DeepEqual(ids(got), tt.want) {
				t.Fatalf("ListRollouts = %v, %v; want %v", ids(got), err, tt.want)
			}
		})
	}
}
