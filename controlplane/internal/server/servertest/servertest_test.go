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
// is a replica holding its replica/<holder> lease as in production, and a
// restart, or a new start on the same data directory, finds the same
// database.
func TestDefaultStoreFollowsStoreEnv(t *testing.T) {
	dir := t.TempDir()
	cp := Start(t, WithDataDir(dir))
	ctx := context.Background()
	if got, want := cp.Config().Store.Driver, Driver(); got != want {
		t.Fatalf("store.driver = %q, want %q (%s=%q)", got, want, StoreEnv, os.Getenv(StoreEnv))
	}
	holder := cp.Server.Holder()
	switch Driver() {
	case config.DriverPostgres:
		if !strings.Contains(holder, fmt.Sprintf("/%d/", os.Getpid())) || !cp.Server.ReplicaMode() {
			t.Fatalf("Holder() = %q, want this process's holder ID (host/pid/random) in replica mode", holder)
		}
		_, err := cp.Store().AcquireLease(ctx, server.ReplicaLeaseName(holder), "intruder", 10*time.Second)
		var held *store.LeaseHeldError
		if !errors.As(err, &held) || held.Lease.Holder != holder {
			t.Fatalf("AcquireLease of the replica lease by another holder = %v, want it held by %s", err, holder)
		}
	default:
		if holder != "" || cp.Server.ReplicaMode() {
			t.Fatalf("Holder() = %q on SQLite, want \"\": one process, no replica mode", holder)
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

// TestReplicasShareOneDatabaseAndCA starts two replicas: each has a holder
// of its own and a server certificate of its own issued by the shared CA,
// the admin token works on both, and state written through one is read
// through the other.
func TestReplicasShareOneDatabaseAndCA(t *testing.T) {
	r := StartReplicas(t, 2)
	a, b := r.All[0], r.All[1]
	if a.Server.Holder() == "" || a.Server.Holder() == b.Server.Holder() {
		t.Fatalf("holders %q and %q, want two distinct non-empty ones", a.Server.Holder(), b.Server.Holder())
	}
	if a.Server.CA().Fingerprint() != b.Server.CA().Fingerprint() {
		t.Fatal("the replicas run with different CAs")
	}
	certA, certB := a.Server.TLSConfig().Certificates[0], b.Server.TLSConfig().Certificates[0]
	if string(certA.Certificate[0]) == string(certB.Certificate[0]) {
		t.Error("both replicas serve the same server certificate, want one each")
	}
	for _, cp := range r.All {
		if cp.Config().TLS.CACertFile != r.CACertFile || cp.Config().Store.DSN != r.DSN {
			t.Errorf("replica in %s: ca_cert_file %q, dsn %q; want the shared ones", cp.DataDir(), cp.Config().TLS.CACertFile, cp.Config().Store.DSN)
		}
	}
	created, err := flotillav1.NewFleetServiceClient(a.Dial(a.ClientTLS())).CreateJoinToken(
		Bearer(context.Background(), r.AdminToken()), &flotillav1.CreateJoinTokenRequest{Description: "made on a"})
	if err != nil {
		t.Fatalf("CreateJoinToken on a: %v", err)
	}
	list, err := flotillav1.NewAdminServiceClient(b.Dial(b.ClientTLS())).ListJoinTokens(
		Bearer(context.Background(), r.AdminToken()), &flotillav1.ListJoinTokensRequest{})
	if err != nil {
		t.Fatalf("ListJoinTokens on b: %v", err)
	}
	if len(list.GetTokens()) != 1 || list.GetTokens()[0].GetId() != created.GetTokenId() {
		t.Errorf("join tokens on b = %v, want the one created on a (%s)", list.GetTokens(), created.GetTokenId())
	}
	a.Stop()
	if live := r.Live(); len(live) != 1 || live[0] != b {
		t.Errorf("Live() after stopping a = %d replicas, want b only", len(live))
	}
	if _, err := b.Store().AcquireLease(context.Background(), server.ReplicaLeaseName(a.Server.Holder()), "x", time.Second); err != nil {
		t.Errorf("a's replica lease after a stopped: %v, want it released", err)
	}
}
