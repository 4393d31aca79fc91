package servertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/server"
	"flotilla.dev/controlplane/internal/store"
)

func TestMain(m *testing.M) { Main(m) }

// TestRestartKeepsStateOnTheSameStore starts a control plane through every
// option, changes state over gRPC, restarts it and finds the state again:
// the store opener runs at each start and BeforeRun sees each server.
func TestRestartKeepsStateOnTheSameStore(t *testing.T) {
	var opened, prepared int
	frozen := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	cp := Start(t,
		WithStore(func(ctx context.Context, cfg config.Config) (store.Store, error) {
			opened++
			return SQLite(ctx, cfg)
		}),
		WithConfig(func(c *config.Config) { c.AgentLostAfter = config.Duration(5 * time.Second) }),
		WithClock(func() time.Time { return frozen }),
		WithIntervals(server.Intervals{RolloutTick: 10 * time.Millisecond}),
		BeforeRun(func(*server.Server) { prepared++ }),
	)
	if got := cp.Config().AgentLostAfter.Std(); got != 5*time.Second {
		t.Errorf("agent_lost_after = %s, want the adjusted 5s", got)
	}
	ctx := Bearer(context.Background(), cp.AdminToken)
	created, err := flotillav1.NewFleetServiceClient(cp.Dial(cp.ClientTLS())).CreateJoinToken(ctx,
		&flotillav1.CreateJoinTokenRequest{Description: "kept across a restart"})
	if err != nil {
		t.Fatalf("CreateJoinToken: %v", err)
	}
	stored, err := cp.Store().GetJoinToken(context.Background(), created.GetTokenId())
	if err != nil {
		t.Fatalf("the token is not in Store(): %v", err)
	}
	if !stored.CreatedAt.Equal(frozen) {
		t.Errorf("token created at %s, want the injected clock's %s", stored.CreatedAt, frozen)
	}

	again := cp.Restart()
	if opened != 2 || prepared != 2 {
		t.Errorf("store opened %d times, BeforeRun called %d times; want 2 each (start and restart)", opened, prepared)
	}
	if again.AdminToken != cp.AdminToken || again.DataDir() != cp.DataDir() {
		t.Errorf("restart changed the data directory or admin token")
	}
	list, err := flotillav1.NewAdminServiceClient(again.Dial(again.ClientTLS())).ListJoinTokens(
		Bearer(context.Background(), again.AdminToken), &flotillav1.ListJoinTokensRequest{})
	if err != nil {
		t.Fatalf("ListJoinTokens after the restart: %v", err)
	}
	want := []*flotillav1.JoinToken{{Id: created.GetTokenId(), Description: "kept across a restart"}}
	if diff := cmp.Diff(want, list.GetTokens(), protocmp.Transform(),
		protocmp.IgnoreFields(&flotillav1.JoinToken{}, "created_at", "expires_at", "max_uses", "uses", "labels", "revoked_at")); diff != "" {
		t.Errorf("join tokens after the restart (-want +got):\n%s", diff)
	}
	cp.Stop() // stopping a stopped control plane does nothing
}

// TestDefaultStoreFollowsStoreEnv: a control plane started without
// WithStore runs on the driver FLOTILLA_TEST_STORE names; on PostgreSQL it
// holds the control-plane lease as in production, and a restart, or a new
// start on the same data directory, finds the same database.
func TestDefaultStoreFollowsStoreEnv(t *testing.T) {
	dir := t.TempDir()
	cp := Start(t, WithDataDir(dir))
	ctx := context.Background()
	if got, want := cp.Config().Store.Driver, Driver(); got != want {
		t.Fatalf("store.driver = %q, want %q (%s=%q)", got, want, StoreEnv, os.Getenv(StoreEnv))
	}
	_, err := cp.Store().AcquireLease(ctx, "controlplane", "intruder", 10*time.Second)
	switch Driver() {
	case config.DriverPostgres:
		var held *store.LeaseHeldError
		if !errors.As(err, &held) || !strings.Contains(held.Lease.Holder, fmt.Sprintf("/%d/", os.Getpid())) {
			t.Fatalf("AcquireLease by another holder = %v, want the lease held by this process", err)
		}
	default:
		if err != nil {
			t.Fatalf("AcquireLease on SQLite = %v, want nil: the control plane takes no lease there", err)
		}
	}
	if err := cp.Store().CreateJoinToken(ctx, store.JoinToken{ID: "jt-kept", Hash: []byte("h"), MaxUses: 1,
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	cp.Stop()
	for name, again := range map[string]func() *ControlPlane{
		"Restart":               cp.Restart,
		"Start on the same dir": func() *ControlPlane { return Start(t, WithDataDir(dir)) },
	} {
		next := again()
		if _, err := next.Store().GetJoinToken(ctx, "jt-kept"); err != nil {
			t.Errorf("%s: the join token is not in the store: %v", name, err)
		}
		next.Stop()
	}
}
