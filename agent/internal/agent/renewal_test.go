package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/fakecp"
	"flotilla.dev/agent/internal/journal"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// observed is a logger whose entries a test reads, and waits for.
type observed struct {
	logs *observer.ObservedLogs
	msgs chan string // every message, in order
}

func observe(t *testing.T, cfg *Config) *observed {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	o := &observed{logs: logs, msgs: make(chan string, 10000)}
	cfg.Logger = zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()), zap.Hooks(func(e zapcore.Entry) error {
		select {
		case o.msgs <- e.Message:
		default: // a test that stopped reading must not block the agent
		}
		return nil
	}))
	return o
}

// waitLog waits until msg is logged after the messages read so far.
func (o *observed) waitLog(t *testing.T, ctx context.Context, msg string) {
	t.Helper()
	for {
		select {
		case m := <-o.msgs:
			if m == msg {
				return
			}
		case <-ctx.Done():
			t.Fatalf("%q was never logged", msg)
		}
	}
}

// renewing is an agent whose certificate is due for renewal as it starts:
// its clock runs 45 minutes ahead of the fake control plane's, which issues
// certificates valid for an hour, so the renewal time (39 minutes in) has
// come. The control plane holds the renewal until release.
type renewing struct {
	srv     *fakecp.Server
	cfg     Config
	clock   *clockwork.FakeClock
	log     *observed
	release func()
	agent   *running
}

func startRenewing(t *testing.T, mutate func(*Config)) *renewing {
	t.Helper()
	srv := fakecp.Start(t)
	r := &renewing{srv: srv, release: srv.HoldRenewals(), clock: clockwork.NewFakeClockAt(time.Now().Add(45 * time.Minute))}
	t.Cleanup(r.release)
	r.cfg = testConfig(t, srv, filepath.Join(t.TempDir(), "state"))
	r.cfg.Clock = r.clock
	r.cfg.Backoff = backoff.Config{Initial: time.Second, Max: time.Second, Jitter: backoff.NoJitter}
	r.log = observe(t, &r.cfg)
	if mutate != nil {
		mutate(&r.cfg)
	}
	r.agent = runAgent(t, r.cfg)
	return r
}

// renew lets the held renewal through and waits until the agent uses the
// new certificate and has scheduled the next renewal.
func (r *renewing) renew(t *testing.T, ctx context.Context) {
	t.Helper()
	// The renewed certificate outlives the agent's fast clock, so that the
	// next renewal is far away.
	r.srv.SetCertTTL(24 * time.Hour)
	r.release()
	r.log.waitLog(t, ctx, "certificate renewed")
	r.log.waitLog(t, ctx, "certificate renewal scheduled")
}

// advance moves the clock by d once the agent waits on n timers.
func (r *renewing) advance(t *testing.T, ctx context.Context, n int, d time.Duration) {
	t.Helper()
	if err := r.clock.BlockUntilContext(ctx, n); err != nil {
		t.Fatalf("the agent never waited on %d timers: %v", n, err)
	}
	r.clock.Advance(d)
}

func TestRenewalKeepsTheStreamAndReachesNewConnections(t *testing.T) {
	ctx := waitCtx(t)
	r := startRenewing(t, nil)
	st, err := r.srv.NextStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next(t, ctx, st) // journal report
	if next(t, ctx, st).GetHeartbeat() == nil {
		t.Fatal("no heartbeat")
	}

	r.renew(t, ctx)
	renewed := r.srv.LastIssued(st.AgentID)
	if renewed.SerialNumber.Cmp(st.CertSerial) == 0 {
		t.Fatal("the renewed certificate has the old serial")
	}

	// The stream was not interrupted: the same stream, still beating.
	select {
	case <-st.Done():
		t.Fatal("the renewal ended the stream")
	default:
	}
	r.advance(t, ctx, 2, r.cfg.HeartbeatInterval) // heartbeat ticker, next renewal
	if next(t, ctx, st).GetHeartbeat() == nil {
		t.Fatal("no heartbeat on the stream after the renewal")
	}
	if n := r.srv.Streams(); n != 1 {
		t.Fatalf("%d streams, want the first one only", n)
	}

	// A new connection presents the new certificate.
	r.srv.DropConnections()
	r.log.waitLog(t, ctx, "disconnected")
	r.advance(t, ctx, 2, time.Second) // reconnect backoff, next renewal
	again, err := r.srv.NextStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.AgentID != st.AgentID || again.CertSerial.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("new stream of %s with serial %s, want %s with the renewed serial %s",
			again.AgentID, again.CertSerial.Text(16), st.AgentID, renewed.SerialNumber.Text(16))
	}
	if n := r.srv.Registrations(); n != 1 {
		t.Errorf("%d registrations, want 1", n)
	}
}

func TestNewRefusesLooseStateFiles(t *testing.T) {
	tests := []struct {
		name string
		// loosen returns the path whose mode it changed, and the mode.
		loosen func(t *testing.T, stateDir string) (string, os.FileMode)
		chmod  string
	}{
		{
			name:   "state directory",
			loosen: func(t *testing.T, dir string) (string, os.FileMode) { return dir, 0o755 },
			chmod:  "chmod 700 ",
		},
		{
			name: "key file",
			loosen: func(t *testing.T, dir string) (string, os.FileMode) {
				return filepath.Join(dir, "agent-1.key"), 0o640
			},
			chmod: "chmod 600 ",
		},
		{
			name: "journal",
			loosen: func(t *testing.T, dir string) (string, os.FileMode) {
				return filepath.Join(dir, journal.FileName), 0o644
			},
			chmod: "chmod 600 ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakecp.Start(t)
			ctx := waitCtx(t)
			stateDir := filepath.Join(t.TempDir(), "state")
			first := runAgent(t, testConfig(t, srv, stateDir))
			if _, err := srv.NextStream(ctx); err != nil {
				t.Fatal(err)
			}
			if err := first.stop(t, ctx); err != nil {
				t.Fatal(err)
			}

			path, mode := tt.loosen(t, stateDir)
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(stateDir, 0o700) })
			_, err := New(testConfig(t, srv, stateDir))
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.chmod+path) {
				t.Fatalf("New: %v, want a refusal naming %s and %q", err, path, tt.chmod+path)
			}
		})
	}
}

func TestNewRefusesALooseJoinTokenFile(t *testing.T) {
	srv := fakecp.Start(t)
	cfg := testConfig(t, srv, filepath.Join(t.TempDir(), "state"))
	cfg.JoinToken = ""
	cfg.JoinTokenFile = filepath.Join(t.TempDir(), "join.token")
	if err := os.WriteFile(cfg.JoinTokenFile, []byte(fakecp.JoinToken), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfg.JoinTokenFile, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(cfg)
	if err == nil || !strings.Contains(err.Error(), "join_token_file") || !strings.Contains(err.Error(), "chmod 600 "+cfg.JoinTokenFile) {
		t.Fatalf("New: %v, want a refusal naming join_token_file and the chmod to run", err)
	}
}
