package agent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/agent/internal/config"
	"flotilla.dev/agent/internal/enroll"
	"flotilla.dev/agent/internal/fakecp"
	"flotilla.dev/agent/internal/journal"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig is a valid configuration for an agent of srv that pins its CA.
func testConfig(t *testing.T, srv *fakecp.Server, stateDir string) Config {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"status":"healthy","timestamp":"now","database":"ok","cache":"ok"}`))
	}))
	t.Cleanup(app.Close)

	cfg := config.Defaults()
	cfg.ControlPlane = config.ControlPlane{
		Address:    fakecp.Address,
		CASHA256:   strings.ToUpper(srv.CA.SHA256),
		ServerName: fakecp.ServerName,
	}
	cfg.JoinToken = fakecp.JoinToken
	cfg.StateDir = stateDir
	cfg.Hostname = "web-1"
	cfg.Labels = map[string]string{"env": "test", "role": "web"}
	cfg.Health.URL = app.URL + "/health"
	cfg.DiskPaths = []string{t.TempDir()}
	return Config{
		Config:      cfg,
		Version:     "1.2.3",
		Logger:      zaptest.NewLogger(t),
		DialOptions: []grpc.DialOption{srv.DialOption()},
	}
}

// running is an agent run in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func runAgent(t *testing.T, cfg Config) *running {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("the agent did not stop")
		}
	})
	return r
}

// stop stops the agent like SIGTERM does and returns Run's result.
func (r *running) stop(t *testing.T, ctx context.Context) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-ctx.Done():
		t.Fatal("the agent did not stop")
		return nil
	}
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRegisterConnectHeartbeatShutdown(t *testing.T) {
	srv := fakecp.Start(t)
	ctx := waitCtx(t)
	cfg := testConfig(t, srv, filepath.Join(t.TempDir(), "state"))
	agent := runAgent(t, cfg)

	st, err := srv.NextStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := st.Hello
	if st.AgentID != "web-1-1" || hello.GetAgentId() != "web-1-1" || hello.GetVersion() != "1.2.3" ||
		hello.GetHostname() != "web-1" || hello.GetLabels()["role"] != "web" ||
		strings.Join(hello.GetCapabilities(), ",") != "heartbeat" || hello.GetStartedAt() == nil {
		t.Errorf("unexpected hello %v", hello)
	}

	if report := next(t, ctx, st).GetJournalReport(); report == nil || len(report.GetEntries()) != 0 {
		t.Fatalf("the first message after the welcome is not an empty journal report: %v", report)
	}
	hb := next(t, ctx, st).GetHeartbeat()
	if hb == nil {
		t.Fatal("the message after the journal report is not a heartbeat")
	}
	if host := hb.GetHost(); host.GetCpuCount() == 0 || host.GetMemoryTotalBytes() == 0 || len(host.GetDisks()) != 2 {
		t.Errorf("implausible host metrics %v", host)
	}
	if app := hb.GetApp(); !app.GetHealthy() || app.GetStatus() != "healthy" || app.GetHttpStatus() != 200 {
		t.Errorf("app health %v, want healthy", app)
	}

	err = st.Send(ctx, &flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Command{Command: &flotillav1.Command{
		Id: "cmd-1", Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{Restart: &flotillav1.RestartCommand{Container: "app"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	// This agent has no executors: the command is rejected with the reason.
	ev := nextEvent(t, ctx, st)
	if ev.GetCommandId() != "cmd-1" || ev.GetState() != flotillav1.CommandState_COMMAND_STATE_REJECTED ||
		!strings.Contains(ev.GetMessage(), "no restart executor") {
		t.Fatalf("got %v, want cmd-1 rejected for want of an executor", ev)
	}
	assertPrivate(t, filepath.Join(cfg.StateDir, journal.FileName))

	if err := agent.stop(t, ctx); err != nil {
		t.Fatalf("Run returned %v on shutdown, want nil", err)
	}
	select {
	case <-st.ClosedByClient:
	default:
		t.Error("the agent did not close its side of the stream before exiting")
	}
}

func TestSecondStartSkipsRegistration(t *testing.T) {
	srv := fakecp.Start(t)
	ctx := waitCtx(t)
	stateDir := filepath.Join(t.TempDir(), "state")

	first := runAgent(t, testConfig(t, srv, stateDir))
	st, err := srv.NextStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.stop(t, ctx); err != nil {
		t.Fatal(err)
	}

	// No token and no trust anchor: they were needed only to register.
	cfg := testConfig(t, srv, stateDir)
	cfg.JoinToken, cfg.ControlPlane.CASHA256 = "", ""
	runAgent(t, cfg)
	again, err := srv.NextStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.AgentID != st.AgentID || srv.Registrations() != 1 || srv.RegisterCalls() != 1 {
		t.Errorf("second start is agent %q after %d registrations; want %q after 1", again.AgentID, srv.Registrations(), st.AgentID)
	}
}

func TestRejectedJoinTokenIsFatal(t *testing.T) {
	srv := fakecp.Start(t)
	ctx := waitCtx(t)
	cfg := testConfig(t, srv, filepath.Join(t.TempDir(), "state"))
	cfg.JoinToken = "expired"
	agent := runAgent(t, cfg)
	select {
	case err := <-agent.done:
		agent.done <- err
		if !errors.Is(err, enroll.ErrJoinTokenRejected) {
			t.Fatalf("Run returned %v, want ErrJoinTokenRejected", err)
		}
	case <-ctx.Done():
		t.Fatal("Run kept retrying a rejected token")
	}
}

func TestShutdownWhileRegistering(t *testing.T) {
	srv := fakecp.Start(t)
	srv.FailRegister(status.Error(codes.Unavailable, "starting"))
	ctx := waitCtx(t)
	clock := clockwork.NewFakeClockAt(time.Now())
	cfg := testConfig(t, srv, filepath.Join(t.TempDir(), "state"))
	cfg.Clock = clock
	agent := runAgent(t, cfg)

	if err := clock.BlockUntilContext(ctx, 1); err != nil { // the retry backoff
		t.Fatal(err)
	}
	if err := agent.stop(t, ctx); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	srv := fakecp.Start(t)
	cfg := testConfig(t, srv, t.TempDir())
	cfg.ControlPlane.Address = "no-port"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "control_plane.address") {
		t.Fatalf("got %v, want an error naming control_plane.address", err)
	}
}

func next(t *testing.T, ctx context.Context, st *fakecp.Stream) *flotillav1.ConnectRequest {
	t.Helper()
	select {
	case msg := <-st.Received:
		return msg
	case <-ctx.Done():
		t.Fatal("no message from the agent")
		return nil
	}
}

// nextEvent reads the stream until a command event, skipping heartbeats.
func nextEvent(t *testing.T, ctx context.Context, st *fakecp.Stream) *flotillav1.CommandEvent {
	t.Helper()
	for {
		msg := next(t, ctx, st)
		if ev := msg.GetCommandEvent(); ev != nil {
			return ev
		}
		if msg.GetHeartbeat() == nil {
			t.Fatalf("got %v, want a command event", msg)
		}
	}
}

func assertPrivate(t *testing.T, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, info.Mode().Perm())
	}
}
