package api_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/server/servertest"
	"flotilla.dev/controlplane/internal/store"
)

// newRolloutService starts a control plane (servertest) and returns its
// rollout service's client with an operator's context (API token at-1).
// Agents web-1 and web-2 (role=web) are registered and offline, so the
// rollouts started here wait for them and stay PREPARING.
func newRolloutService(t *testing.T) (flotillav1.RolloutServiceClient, context.Context) {
	t.Helper()
	cp := servertest.Start(t)
	ctx := context.Background()
	st := cp.Store()
	now := time.Now()
	if err := st.CreateJoinToken(ctx, store.JoinToken{ID: "jt-1", Hash: auth.HashSecret("s"), MaxUses: 10, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"web-1", "web-2"} {
		agent, err := st.RegisterAgent(ctx, auth.HashSecret("s"), now, func(store.JoinToken) (store.Agent, error) {
			return store.Agent{ID: id, Hostname: id, Labels: map[string]string{"role": "web"}, State: store.AgentDisconnected, RegisteredAt: now}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cp.Server.Registry().Add(agent)
	}
	secret, hash, err := auth.NewSecret(auth.APITokenPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateAPIToken(ctx, store.APIToken{ID: "at-1", Name: "operator", Hash: hash, Role: auth.RoleOperator.String(), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	return flotillav1.NewRolloutServiceClient(cp.Dial(cp.ClientTLS())), servertest.Bearer(ctx, secret)
}

// watchErr is the error a watch of req ends with.
func watchErr(ctx context.Context, s flotillav1.RolloutServiceClient, req *flotillav1.WatchRolloutRequest) error {
	stream, err := s.WatchRollout(ctx, req)
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

func validService() *flotillav1.Service {
	return &flotillav1.Service{
		Name: "web", Container: "app", Selector: "role=web", HealthUrl: "http://127.0.0.1:8080/health",
		LoadBalancer: &flotillav1.LoadBalancer{Selector: "role=lb", Upstream: "app", ServerPort: 8080},
	}
}

func TestPutServiceValidation(t *testing.T) {
	s, ctx := newRolloutService(t)
	tests := []struct {
		name   string
		change func(*flotillav1.Service)
		field  string
	}{
		{"name uppercase", func(v *flotillav1.Service) { v.Name = "Web" }, "service.name"},
		{"name empty", func(v *flotillav1.Service) { v.Name = "" }, "service.name"},
		{"name too long", func(v *flotillav1.Service) { v.Name = strings.Repeat("a", 64) }, "service.name"},
		{"container", func(v *flotillav1.Service) { v.Container = "app; rm -rf /" }, "service.container"},
		{"container empty", func(v *flotillav1.Service) { v.Container = "" }, "service.container"},
		{"selector empty", func(v *flotillav1.Service) { v.Selector = "" }, "service.selector"},
		{"selector grammar", func(v *flotillav1.Service) { v.Selector = "role in web" }, "service.selector"},
		{"health url", func(v *flotillav1.Service) { v.HealthUrl = "ftp://x/health" }, "service.health_url"},
		{"lb selector", func(v *flotillav1.Service) { v.LoadBalancer.Selector = "" }, "service.load_balancer.selector"},
		{"lb upstream", func(v *flotillav1.Service) { v.LoadBalancer.Upstream = "app upstream" }, "service.load_balancer.upstream"},
		{"lb port 0", func(v *flotillav1.Service) { v.LoadBalancer.ServerPort = 0 }, "service.load_balancer.server_port"},
		{"lb port 70000", func(v *flotillav1.Service) { v.LoadBalancer.ServerPort = 70000 }, "service.load_balancer.server_port"},
		{"lb address label", func(v *flotillav1.Service) { v.LoadBalancer.AddressLabel = "-addr" }, "service.load_balancer.address_label"},
		{"default strategy", func(v *flotillav1.Service) {
			v.DefaultStrategy = &flotillav1.RolloutStrategy{Batch: &flotillav1.RolloutStrategy_BatchPercent{BatchPercent: 101}}
		}, "service.default_strategy.batch_percent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := validService()
			tt.change(svc)
			_, err := s.PutService(ctx, &flotillav1.PutServiceRequest{Service: svc})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.field+":") {
				t.Fatalf("err = %v, want InvalidArgument naming %s", err, tt.field)
			}
		})
	}
	if _, err := s.PutService(ctx, &flotillav1.PutServiceRequest{}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "service:") {
		t.Fatalf("no service: %v", err)
	}
}

func TestServices(t *testing.T) {
	s, ctx := newRolloutService(t)
	first, err := s.PutService(ctx, &flotillav1.PutServiceRequest{Service: validService()})
	if err != nil {
		t.Fatal(err)
	}
	if first.GetService().GetCreatedAt() == nil || first.GetService().GetCurrentImage() != "" {
		t.Fatalf("PutService = %v", first)
	}
	changed := validService()
	changed.Selector = "role=web,env=prod"
	changed.CurrentImage = "ignored:1" // output only
	second, err := s.PutService(ctx, &flotillav1.PutServiceRequest{Service: changed})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(second.GetService().GetCreatedAt(), first.GetService().GetCreatedAt()) || second.GetService().GetSelector() != changed.Selector ||
		second.GetService().GetCurrentImage() != "" {
		t.Fatalf("replaced service = %v", second)
	}
	other := validService()
	other.Name = "api"
	if _, err := s.PutService(ctx, &flotillav1.PutServiceRequest{Service: other}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetService(ctx, &flotillav1.GetServiceRequest{Name: "web"})
	if err != nil {
		t.Fatalf("GetService: %v", err)
	}
	if diff := cmp.Diff(second.GetService(), got.GetService(), protocmp.Transform()); diff != "" {
		t.Fatalf("GetService differs from what PutService returned (-put +get):\n%s", diff)
	}
	list, err := s.ListServices(ctx, &flotillav1.ListServicesRequest{})
	if err != nil {
		t.Fatalf("ListServices: %v", err)
	}
	var names []string
	for _, svc := range list.GetServices() {
		names = append(names, svc.GetName())
	}
	if diff := cmp.Diff([]string{"api", "web"}, names); diff != "" {
		t.Fatalf("ListServices names (-want +got):\n%s", diff)
	}
	if _, err := s.GetService(ctx, &flotillav1.GetServiceRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: %v", err)
	}
	if _, err := s.GetService(ctx, &flotillav1.GetServiceRequest{}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "name:") {
		t.Fatalf("no name: %v", err)
	}
}

func TestStartRolloutValidation(t *testing.T) {
	s, ctx := newRolloutService(t)
	if _, err := s.PutService(ctx, &flotillav1.PutServiceRequest{Service: validService()}); err != nil {
		t.Fatal(err)
	}
	d := durationpb.New
	tests := []struct {
		name   string
		change func(*flotillav1.StartRolloutRequest)
		code   codes.Code
		field  string
	}{
		{"no service", func(r *flotillav1.StartRolloutRequest) { r.Service = "" }, codes.InvalidArgument, "service"},
		{"unknown service", func(r *flotillav1.StartRolloutRequest) { r.Service = "nope" }, codes.NotFound, "service"},
		{"no image", func(r *flotillav1.StartRolloutRequest) { r.Image = "" }, codes.InvalidArgument, "image"},
		{"bad image", func(r *flotillav1.StartRolloutRequest) { r.Image = "Registry/App:!" }, codes.InvalidArgument, "image"},
		{"image without tag", func(r *flotillav1.StartRolloutRequest) { r.Image = "registry.example/app" }, codes.InvalidArgument, "image"},
		{"bad selector", func(r *flotillav1.StartRolloutRequest) { r.Selector = "role in web" }, codes.InvalidArgument, "selector"},
		{"reason control characters", func(r *flotillav1.StartRolloutRequest) { r.Reason = "a\x00b" }, codes.InvalidArgument, "reason"},
		{"batch_percent 0", func(r *flotillav1.StartRolloutRequest) {
			r.Strategy.Batch = &flotillav1.RolloutStrategy_BatchPercent{BatchPercent: 0}
		}, codes.InvalidArgument, "strategy.batch_percent"},
		{"batch_percent 101", func(r *flotillav1.StartRolloutRequest) {
			r.Strategy.Batch = &flotillav1.RolloutStrategy_BatchPercent{BatchPercent: 101}
		}, codes.InvalidArgument, "strategy.batch_percent"},
		{"batch_size 0", func(r *flotillav1.StartRolloutRequest) {
			r.Strategy.Batch = &flotillav1.RolloutStrategy_BatchSize{BatchSize: 0}
		}, codes.InvalidArgument, "strategy.batch_size"},
		{"canary negative", func(r *flotillav1.StartRolloutRequest) { r.Strategy.Canary = -1 }, codes.InvalidArgument, "strategy.canary"},
		{"max_unavailable negative", func(r *flotillav1.StartRolloutRequest) { r.Strategy.MaxUnavailable = -1 }, codes.InvalidArgument, "strategy.max_unavailable"},
		{"min_healthy_time above healthy_deadline", func(r *flotillav1.StartRolloutRequest) {
			r.Strategy.MinHealthyTime, r.Strategy.HealthyDeadline = d(time.Minute), d(30*time.Second)
		}, codes.InvalidArgument, "strategy.min_healthy_time"},
		{"min_healthy_time above the default deadline", func(r *flotillav1.StartRolloutRequest) {
			r.Strategy.MinHealthyTime = d(10 * time.Minute)
		}, codes.InvalidArgument, "strategy.min_healthy_time"},
		{"healthy_deadline 0", func(r *flotillav1.StartRolloutRequest) { r.Strategy.HealthyDeadline = d(0) }, codes.InvalidArgument, "strategy.healthy_deadline"},
		{"pause negative", func(r *flotillav1.StartRolloutRequest) { r.Strategy.PauseBetweenBatches = d(-time.Second) }, codes.InvalidArgument, "strategy.pause_between_batches"},
		{"pause too long", func(r *flotillav1.StartRolloutRequest) { r.Strategy.PauseBetweenBatches = d(48 * time.Hour) }, codes.InvalidArgument, "strategy.pause_between_batches"},
		{"max_failures count 0", func(r *flotillav1.StartRolloutRequest) {
			r.Strategy.MaxFailures = &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: 0}}
		}, codes.InvalidArgument, "strategy.max_failures.count"},
		{"max_failures percent 101", func(r *flotillav1.StartRolloutRequest) {
			r.Strategy.MaxFailures = &flotillav1.Limit{Kind: &flotillav1.Limit_Percent{Percent: 101}}
		}, codes.InvalidArgument, "strategy.max_failures.percent"},
		{"max_failures empty", func(r *flotillav1.StartRolloutRequest) { r.Strategy.MaxFailures = &flotillav1.Limit{} }, codes.InvalidArgument, "strategy.max_failures"},
		{"offline policy", func(r *flotillav1.StartRolloutRequest) { r.Strategy.OfflineHosts = 9 }, codes.InvalidArgument, "strategy.offline_hosts"},
		{"offline_wait 0", func(r *flotillav1.StartRolloutRequest) { r.Strategy.OfflineWait = d(0) }, codes.InvalidArgument, "strategy.offline_wait"},
		{"offline hosts under FAIL", func(r *flotillav1.StartRolloutRequest) {
			r.Strategy.OfflineHosts = flotillav1.OfflinePolicy_OFFLINE_POLICY_FAIL
		}, codes.FailedPrecondition, "web-1, web-2"},
		{"every host offline under SKIP", func(r *flotillav1.StartRolloutRequest) {
			r.Strategy.OfflineHosts = flotillav1.OfflinePolicy_OFFLINE_POLICY_SKIP
		}, codes.FailedPrecondition, "2 offline"},
		{"selector matches nothing", func(r *flotillav1.StartRolloutRequest) { r.Selector = "role=db" }, codes.FailedPrecondition, "role=db"},
		{"load balancer missing", func(r *flotillav1.StartRolloutRequest) {}, codes.FailedPrecondition, "load_balancer.selector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &flotillav1.StartRolloutRequest{Service: "web", Image: "registry.example/app:2.0", Strategy: &flotillav1.RolloutStrategy{
				OfflineHosts: flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT}}
			tt.change(req)
			if strings.Contains(tt.name, "offline") || strings.Contains(tt.name, "selector matches") {
				// Reach the fleet checks: a service without a load balancer.
				svc := validService()
				svc.LoadBalancer = nil
				if _, err := s.PutService(ctx, &flotillav1.PutServiceRequest{Service: svc}); err != nil {
					t.Fatal(err)
				}
				defer s.PutService(ctx, &flotillav1.PutServiceRequest{Service: validService()})
			}
			_, err := s.StartRollout(ctx, req)
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want %v naming %s", err, tt.code, tt.field)
			}
		})
	}
}

func TestRolloutCallsValidation(t *testing.T) {
	s, ctx := newRolloutService(t)
	svc := validService()
	svc.LoadBalancer = nil
	if _, err := s.PutService(ctx, &flotillav1.PutServiceRequest{Service: svc}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		call  func() error
		code  codes.Code
		field string
	}{
		{"get no id", func() error { _, err := s.GetRollout(ctx, &flotillav1.GetRolloutRequest{}); return err }, codes.InvalidArgument, "rollout_id"},
		{"get unknown", func() error {
			_, err := s.GetRollout(ctx, &flotillav1.GetRolloutRequest{RolloutId: "ro-nope"})
			return err
		}, codes.NotFound, "ro-nope"},
		{"list negative page", func() error {
			_, err := s.ListRollouts(ctx, &flotillav1.ListRolloutsRequest{PageSize: -1})
			return err
		}, codes.InvalidArgument, "page_size"},
		{"list huge page", func() error {
			_, err := s.ListRollouts(ctx, &flotillav1.ListRolloutsRequest{PageSize: 500})
			return err
		}, codes.InvalidArgument, "page_size"},
		{"list bad state", func() error {
			_, err := s.ListRollouts(ctx, &flotillav1.ListRolloutsRequest{States: []flotillav1.RolloutState{42}})
			return err
		}, codes.InvalidArgument, "states"},
		{"list bad token", func() error {
			_, err := s.ListRollouts(ctx, &flotillav1.ListRolloutsRequest{PageToken: "!!"})
			return err
		}, codes.InvalidArgument, "page_token"},
		{"list too many states", func() error {
			_, err := s.ListRollouts(ctx, &flotillav1.ListRolloutsRequest{States: make([]flotillav1.RolloutState, 17)})
			return err
		}, codes.InvalidArgument, "states: 17 entries, at most 16 allowed"},
		{"list another listing's token", func() error {
			tok := base64.RawURLEncoding.EncodeToString([]byte("p1\x00ListCommands\x000000000000000000\x00fc-1"))
			_, err := s.ListRollouts(ctx, &flotillav1.ListRolloutsRequest{PageToken: tok})
			return err
		}, codes.InvalidArgument, "page_token: not a token from a previous ListRollouts response"},
		{"list a token bound to another filter", func() error {
			tok := base64.RawURLEncoding.EncodeToString([]byte("p1\x00ListRollouts\x000000000000000000\x00ro-1"))
			_, err := s.ListRollouts(ctx, &flotillav1.ListRolloutsRequest{Service: "web", PageToken: tok})
			return err
		}, codes.InvalidArgument, "page_token: issued for a ListRollouts query with another filter"},
		{"list bad service", func() error {
			_, err := s.ListRollouts(ctx, &flotillav1.ListRolloutsRequest{Service: "Web!"})
			return err
		}, codes.InvalidArgument, "service"},
		{"pause no id", func() error { _, err := s.PauseRollout(ctx, &flotillav1.PauseRolloutRequest{}); return err }, codes.InvalidArgument, "rollout_id"},
		{"pause unknown", func() error {
			_, err := s.PauseRollout(ctx, &flotillav1.PauseRolloutRequest{RolloutId: "ro-nope"})
			return err
		}, codes.NotFound, "ro-nope"},
		{"resume unknown", func() error {
			_, err := s.ResumeRollout(ctx, &flotillav1.ResumeRolloutRequest{RolloutId: "ro-nope"})
			return err
		}, codes.NotFound, "ro-nope"},
		{"abort bad reason", func() error {
			_, err := s.AbortRollout(ctx, &flotillav1.AbortRolloutRequest{RolloutId: "ro-x", Reason: strings.Repeat("x", 2000)})
			return err
		}, codes.InvalidArgument, "reason"},
		{"rollback no service", func() error {
			_, err := s.RollbackService(ctx, &flotillav1.RollbackServiceRequest{})
			return err
		}, codes.InvalidArgument, "service"},
		{"rollback unknown service", func() error {
			_, err := s.RollbackService(ctx, &flotillav1.RollbackServiceRequest{Service: "nope"})
			return err
		}, codes.NotFound, "nope"},
		{"rollback bad strategy", func() error {
			_, err := s.RollbackService(ctx, &flotillav1.RollbackServiceRequest{Service: "web", Strategy: &flotillav1.RolloutStrategy{Canary: -2}})
			return err
		}, codes.InvalidArgument, "strategy.canary"},
		{"rollback without history", func() error {
			_, err := s.RollbackService(ctx, &flotillav1.RollbackServiceRequest{Service: "web"})
			return err
		}, codes.FailedPrecondition, "no rollout"},
		{"watch no id", func() error { return watchErr(ctx, s, &flotillav1.WatchRolloutRequest{}) }, codes.InvalidArgument, "rollout_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want %v naming %s", err, tt.code, tt.field)
			}
		})
	}
}

func TestListRolloutsPages(t *testing.T) {
	s, ctx := newRolloutService(t)
	var ids []string
	for _, name := range []string{"a", "b", "c"} {
		svc := validService()
		svc.Name, svc.LoadBalancer = name, nil
		if _, err := s.PutService(ctx, &flotillav1.PutServiceRequest{Service: svc}); err != nil {
			t.Fatal(err)
		}
		// The hosts are offline: WAIT keeps them in the plan.
		r, err := s.StartRollout(ctx, &flotillav1.StartRolloutRequest{Service: name, Image: "registry.example/app:2.0",
			Strategy: &flotillav1.RolloutStrategy{OfflineHosts: flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT}})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetRollout().GetCreatedBy() != "operator:at-1" || len(r.GetRollout().GetHosts()) != 2 {
			t.Fatalf("started = %v", r)
		}
		ids = append(ids, r.GetRollout().GetId())
		time.Sleep(2 * time.Millisecond) // distinct creation times
	}
	p1, err := s.ListRollouts(ctx, &flotillav1.ListRolloutsRequest{PageSize: 2})
	if err != nil || len(p1.GetRollouts()) != 2 || p1.GetRollouts()[0].GetId() != ids[2] || p1.GetNextPageToken() == "" {
		t.Fatalf("page 1 = %v, %v", p1, err)
	}
	if len(p1.GetRollouts()[0].GetHosts()) != 0 {
		t.Errorf("a listed rollout carries hosts")
	}
	p2, err := s.ListRollouts(ctx, &flotillav1.ListRolloutsRequest{PageSize: 2, PageToken: p1.GetNextPageToken()})
	if err != nil || len(p2.GetRollouts()) != 1 || p2.GetRollouts()[0].GetId() != ids[0] || p2.GetNextPageToken() != "" {
		t.Fatalf("page 2 = %v, %v", p2, err)
	}
	byService, err := s.ListRollouts(ctx, &flotillav1.ListRolloutsRequest{Service: "b",
		States: []flotillav1.RolloutState{flotillav1.RolloutState_ROLLOUT_STATE_PREPARING}})
	if err != nil || len(byService.GetRollouts()) != 1 || byService.GetRollouts()[0].GetId() != ids[1] {
		t.Fatalf("service b = %v, %v", byService, err)
	}
	// The second start of a service names the active rollout.
	_, err = s.StartRollout(ctx, &flotillav1.StartRolloutRequest{Service: "b", Image: "registry.example/app:3.0",
		Strategy: &flotillav1.RolloutStrategy{OfflineHosts: flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), ids[1]) {
		t.Fatalf("second start = %v, want FailedPrecondition naming %s", err, ids[1])
	}
}
