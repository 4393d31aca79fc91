package enroll

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/endpoint"
	"flotilla.dev/agent/internal/fakecp"
	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	srv   *fakecp.Server
	clock *clockwork.FakeClock
	cfg   Config
}

// newFixture starts a fake control plane and a Config that trusts it through
// its CA file.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := fakecp.Start(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, srv.CA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	clock := clockwork.NewFakeClockAt(time.Now())
	return &fixture{srv: srv, clock: clock, cfg: Config{
		StateDir:    filepath.Join(t.TempDir(), "state"),
		Endpoints:   endpoint.Config{Addresses: []string{fakecp.Address}, ServerName: fakecp.ServerName},
		CAFile:      caFile,
		JoinToken:   fakecp.JoinToken,
		Hostname:    "Web-1",
		Labels:      map[string]string{"env": "test"},
		Logger:      zaptest.NewLogger(t),
		Clock:       clock,
		Backoff:     backoff.Config{Initial: time.Second, Max: time.Second, Jitter: backoff.NoJitter},
		DialOptions: []grpc.DialOption{srv.DialOption()},
	}}
}

func (f *fixture) enroller(t *testing.T) *Enroller {
	t.Helper()
	e, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func pinOf(t *testing.T, hexPin string) []byte {
	t.Helper()
	pin, err := hex.DecodeString(hexPin)
	if err != nil {
		t.Fatal(err)
	}
	return pin
}

func TestRegisterTrust(t *testing.T) {
	otherCA, err := fakecp.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCAFile := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(otherCAFile, otherCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		configure func(*fixture)
		wantErr   error  // errors.Is target; nil means success
		wantText  string // in the error
		wantCalls int    // Register calls that reached the server
	}{
		{
			name:      "ca_file",
			configure: func(*fixture) {},
			wantCalls: 1,
		},
		{
			name: "ca_sha256 pin",
			configure: func(f *fixture) {
				f.cfg.CAFile = ""
				f.cfg.CAPin = pinOf(t, f.srv.CA.SHA256)
			},
			wantCalls: 1,
		},
		{
			name: "ca_file and the matching pin",
			configure: func(f *fixture) {
				f.cfg.CAPin = pinOf(t, f.srv.CA.SHA256)
			},
			wantCalls: 1,
		},
		{
			name: "wrong pin is refused",
			configure: func(f *fixture) {
				f.cfg.CAFile = ""
				f.cfg.CAPin = pinOf(t, otherCA.SHA256)
			},
			wantErr:  ErrUntrustedServer,
			wantText: "matches control_plane.ca_sha256",
		},
		{
			name: "pin of a certificate the server does not present",
			configure: func(f *fixture) {
				f.cfg.CAFile = ""
				sum := sha256.Sum256([]byte("not the CA"))
				f.cfg.CAPin = sum[:]
			},
			wantErr: ErrUntrustedServer,
		},
		{
			name: "pinned CA but wrong server name",
			configure: func(f *fixture) {
				f.cfg.CAFile = ""
				f.cfg.CAPin = pinOf(t, f.srv.CA.SHA256)
				f.cfg.Endpoints.ServerName = "evil.test"
			},
			wantErr:  ErrUntrustedServer,
			wantText: "evil.test",
		},
		{
			name:      "ca_file of another CA is refused",
			configure: func(f *fixture) { f.cfg.CAFile = otherCAFile },
			wantErr:   ErrUntrustedServer,
			wantText:  "unknown authority",
		},
		{
			name: "pin that is not in ca_file",
			configure: func(f *fixture) {
				f.cfg.CAPin = pinOf(t, otherCA.SHA256)
			},
			wantText: "control_plane.ca_sha256 matches no certificate in control_plane.ca_file",
		},
		{
			name:      "no trust configured",
			configure: func(f *fixture) { f.cfg.CAFile = "" },
			wantText:  "config: control_plane.ca_file or control_plane.ca_sha256 is required",
		},
		{
			name:      "no join token",
			configure: func(f *fixture) { f.cfg.JoinToken = "" },
			wantText:  "config: join_token or join_token_file is required",
		},
		{
			name:      "wrong join token is fatal",
			configure: func(f *fixture) { f.cfg.JoinToken = "guess" },
			wantErr:   ErrJoinTokenRejected,
			wantText:  "invalid join token",
			wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tt.configure(f)
			id, err := f.enroller(t).Identity(context.Background())
			if got := f.srv.RegisterCalls(); got != tt.wantCalls {
				t.Errorf("%d Register calls reached the server, want %d", got, tt.wantCalls)
			}
			if tt.wantErr == nil && tt.wantText == "" {
				if err != nil {
					t.Fatalf("Identity: %v", err)
				}
				if id.AgentID != "web-1-1" {
					t.Errorf("agent ID %q", id.AgentID)
				}
				return
			}
			if err == nil {
				t.Fatal("Identity succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
		})
	}
}

func TestRegisterSavesState(t *testing.T) {
	f := newFixture(t)
	id, err := f.enroller(t).Identity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(f.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("state dir mode %o, want 700", perm)
	}
	entries, err := os.ReadDir(f.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s mode %o, want 600", e.Name(), perm)
		}
	}
	if got := strings.Join(names, " "); got != "agent-1.crt agent-1.key agent.json ca-1.crt" {
		t.Errorf("state dir holds %q (temporary files left behind?)", got)
	}
	var doc struct {
		AgentID    string `json:"agent_id"`
		Generation uint64 `json:"generation"`
	}
	raw, _ := os.ReadFile(filepath.Join(f.cfg.StateDir, StateFile))
	if err := json.Unmarshal(raw, &doc); err != nil || doc.AgentID != id.AgentID || doc.Generation != 1 {
		t.Errorf("agent.json = %s (%v), want agent_id %q, generation 1", raw, err, id.AgentID)
	}
	keyFile, _, caFile := GenerationFiles(1)
	key, _ := os.ReadFile(filepath.Join(f.cfg.StateDir, keyFile))
	if !strings.HasPrefix(string(key), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("%s is not PKCS#8 PEM: %.40s", keyFile, key)
	}
	ca, _ := os.ReadFile(filepath.Join(f.cfg.StateDir, caFile))
	if string(ca) != string(f.srv.CA.PEM) {
		t.Errorf("%s is not the registration's CA bundle", caFile)
	}
}

func TestSecondStartSkipsRegistration(t *testing.T) {
	f := newFixture(t)
	first, err := f.enroller(t).Identity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The token and trust are only needed to register.
	f.cfg.JoinToken, f.cfg.CAFile = "", ""
	second, err := f.enroller(t).Identity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if second.AgentID != first.AgentID || f.srv.Registrations() != 1 {
		t.Errorf("second start: agent %q after %d registrations; want %q after 1", second.AgentID, f.srv.Registrations(), first.AgentID)
	}
}

func TestUnusableStateRegistersAgain(t *testing.T) {
	tests := []struct {
		name    string
		spoil   func(t *testing.T, f *fixture)
		wantErr string // when there is no token to register again
	}{
		{
			name: "expired certificate",
			spoil: func(t *testing.T, f *fixture) {
				f.clock.Advance(2 * time.Hour) // past the 1h certificate
				f.srv.SetCertTTL(12 * time.Hour)
			},
			wantErr: "certificate expired",
		},
		{
			name: "key replaced",
			spoil: func(t *testing.T, f *fixture) {
				key, _ := newKey()
				pemKey, _ := encodeKey(key)
				keyFile, _, _ := GenerationFiles(1)
				writeFile(t, filepath.Join(f.cfg.StateDir, keyFile), pemKey)
			},
			wantErr: "certificate is not for the agent's key",
		},
		{
			name: "certificate missing",
			spoil: func(t *testing.T, f *fixture) {
				_, certFile, _ := GenerationFiles(1)
				os.Remove(filepath.Join(f.cfg.StateDir, certFile))
			},
			wantErr: "no such file",
		},
		{
			name: "agent ID changed",
			spoil: func(t *testing.T, f *fixture) {
				writeFile(t, filepath.Join(f.cfg.StateDir, StateFile), []byte(`{"agent_id":"other","generation":1}`))
			},
			wantErr: "does not carry the URI SAN spiffe://flotilla/agent/other",
		},
		{
			name:    "garbled agent.json",
			spoil:   func(t *testing.T, f *fixture) { writeFile(t, filepath.Join(f.cfg.StateDir, StateFile), []byte(`{`)) },
			wantErr: "agent.json",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if _, err := f.enroller(t).Identity(context.Background()); err != nil {
				t.Fatal(err)
			}
			tt.spoil(t, f)

			token := f.cfg.JoinToken
			f.cfg.JoinToken = ""
			_, err := f.enroller(t).Identity(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "join_token") {
				t.Fatalf("without a token: got %v, want an error naming the token and %q", err, tt.wantErr)
			}

			f.cfg.JoinToken = token
			id, err := f.enroller(t).Identity(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if f.srv.Registrations() != 2 || id.AgentID != "web-1-2" {
				t.Errorf("agent %q after %d registrations, want a second registration", id.AgentID, f.srv.Registrations())
			}
		})
	}
}

func TestRegisterRetriesWhileUnavailable(t *testing.T) {
	f := newFixture(t)
	unavailable := status.Error(codes.Unavailable, "starting up")
	f.srv.FailRegister(unavailable, unavailable)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	type result struct {
		id  *Identity
		err error
	}
	done := make(chan result, 1)
	go func() {
		id, err := f.enroller(t).Identity(ctx)
		done <- result{id, err}
	}()
	for i := 0; i < 2; i++ { // two backoff waits
		if err := f.clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Second)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if calls := f.srv.RegisterCalls(); calls != 3 {
		t.Errorf("%d Register calls, want 3", calls)
	}
}

func TestRegisterFatalCodes(t *testing.T) {
	tests := []struct {
		code    codes.Code
		wantErr error
	}{
		{codes.Unauthenticated, ErrJoinTokenRejected},
		{codes.InvalidArgument, nil},
		{codes.PermissionDenied, nil},
		{codes.FailedPrecondition, nil},
		{codes.Unimplemented, nil},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			f := newFixture(t)
			f.srv.FailRegister(status.Error(tt.code, "no"))
			_, err := f.enroller(t).Identity(context.Background())
			if status.Code(err) != tt.code {
				t.Errorf("got %v, want code %v", err, tt.code)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v, want %v", err, tt.wantErr)
			}
			if f.srv.RegisterCalls() != 1 {
				t.Errorf("got %v after %d calls; want a final error after 1", err, f.srv.RegisterCalls())
			}
		})
	}
}

func TestRegisterStopsOnCancel(t *testing.T) {
	f := newFixture(t)
	f.srv.FailRegister(status.Error(codes.Unavailable, "down"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.enroller(t).Identity(ctx)
		done <- err
	}()
	if err := f.clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestJoinTokenFile(t *testing.T) {
	tests := []struct {
		name, content, wantErr string
	}{
		{"token with newline", fakecp.JoinToken + "\n", ""},
		{"empty file", "\n", "join_token_file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.cfg.JoinToken = ""
			f.cfg.JoinTokenFile = filepath.Join(t.TempDir(), "token")
			writeFile(t, f.cfg.JoinTokenFile, []byte(tt.content))
			_, err := f.enroller(t).Identity(context.Background())
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckBundleRequiresThePinnedCA(t *testing.T) {
	ca, _ := fakecp.NewCA("pinned")
	other, _ := fakecp.NewCA("other")
	trust, err := newBootstrapTrust("", pinOf(t, ca.SHA256), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := trust.checkBundle(append(other.PEM, ca.PEM...)); err != nil {
		t.Errorf("bundle with the pinned CA refused: %v", err)
	}
	if err := trust.checkBundle(other.PEM); err == nil {
		t.Error("bundle without the pinned CA accepted")
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
