package enroll

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/fakecp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRenewalTime(t *testing.T) {
	nb := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name     string
		notAfter time.Time
		r        float64
		want     time.Time
	}{
		{"start of the window", nb.Add(100 * day), 0, nb.Add(60 * day)},
		{"middle: two thirds, about", nb.Add(100 * day), 0.5, nb.Add(65 * day)},
		{"end of the window", nb.Add(100 * day), 1, nb.Add(70 * day)},
		{"one hour certificate", nb.Add(time.Hour), 0.5, nb.Add(39 * time.Minute)},
		{"no lifetime renews at once", nb, 0.5, nb},
		{"inverted validity renews at once", nb.Add(-time.Hour), 0.5, nb},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RenewalTime(nb, tt.notAfter, tt.r); !got.Equal(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// renewal is a registered agent whose renewal loop the test runs.
type renewal struct {
	f     *fixture
	e     *Enroller
	creds *Credentials
	first *Identity
	logs  *observer.ObservedLogs
	msgs  chan string // every log message, in order
	ctx   context.Context
	done  chan error
}

// newRenewal registers an agent with f's configuration (mutated by
// configure first), logging to an observer.
func newRenewal(t *testing.T, configure func(*fixture)) *renewal {
	t.Helper()
	f := newFixture(t)
	f.cfg.RenewalBackoff = backoff.Config{Initial: time.Second, Max: 4 * time.Second, Jitter: backoff.NoJitter}
	f.cfg.Rand = func() float64 { return 0.5 }
	core, logs := observer.New(zapcore.DebugLevel)
	msgs := make(chan string, 1000)
	f.cfg.Logger = zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()), zap.Hooks(func(e zapcore.Entry) error {
		msgs <- e.Message
		return nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	r := &renewal{f: f, logs: logs, msgs: msgs, ctx: ctx}
	first, err := f.enroller(t).Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.first = first
	if configure != nil {
		configure(f)
	}
	r.e = f.enroller(t)
	id, err := r.e.Load()
	if err != nil {
		t.Fatal(err)
	}
	r.creds = r.e.Credentials(id)
	return r
}

// run starts the renewal loop; the test's end stops it.
func (r *renewal) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.done = make(chan error, 1)
	go func() { r.done <- r.e.RunRenewal(ctx, r.creds) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("RunRenewal returned %v, want nil", err)
		}
	})
}

// waitLog waits until msg is logged.
func (r *renewal) waitLog(t *testing.T, msg string) {
	t.Helper()
	for {
		select {
		case m := <-r.msgs:
			if m == msg {
				return
			}
		case <-r.ctx.Done():
			t.Fatalf("%q was never logged", msg)
		}
	}
}

// advance moves the clock by d once the loop waits on it.
func (r *renewal) advance(t *testing.T, d time.Duration) {
	t.Helper()
	if err := r.f.clock.BlockUntilContext(r.ctx, 1); err != nil {
		t.Fatalf("the renewal loop never waited: %v", err)
	}
	r.f.clock.Advance(d)
}

// advanceTo moves the clock to at once the loop waits on it.
func (r *renewal) advanceTo(t *testing.T, at time.Time) {
	t.Helper()
	if err := r.f.clock.BlockUntilContext(r.ctx, 1); err != nil {
		t.Fatalf("the renewal loop never waited: %v", err)
	}
	r.f.clock.Advance(at.Sub(r.f.clock.Now()))
}

func (r *renewal) renewAt() time.Time {
	return RenewalTime(r.first.NotBefore(), r.first.NotAfter(), 0.5)
}

// saved is the identity a new start would load.
func (r *renewal) saved(t *testing.T) *Identity {
	t.Helper()
	e, err := New(r.f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.Load()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRenewalAtTwoThirdsOfTheLifetime(t *testing.T) {
	r := newRenewal(t, nil)
	r.run(t)
	r.waitLog(t, "certificate renewal scheduled")
	scheduled := r.logs.FilterMessage("certificate renewal scheduled").All()[0].ContextMap()
	if at, _ := scheduled["renew_at"].(time.Time); !at.Equal(r.renewAt()) {
		t.Fatalf("renewal scheduled at %v, want %v (65%% of the lifetime)", scheduled["renew_at"], r.renewAt())
	}

	r.advanceTo(t, r.renewAt().Add(-time.Second))
	r.f.srv.SetCertTTL(24 * time.Hour) // the renewed certificate outlives the fast clock
	if n := r.f.srv.RenewCalls(); n != 0 {
		t.Fatalf("%d renewals before the renewal time", n)
	}
	r.advance(t, time.Second)
	r.waitLog(t, "certificate renewed")

	cur := r.creds.Current()
	issued := r.f.srv.LastIssued(r.first.AgentID)
	switch {
	case cur.AgentID != r.first.AgentID:
		t.Errorf("renewed as %q, want the same agent %q", cur.AgentID, r.first.AgentID)
	case cur.Certificate.Leaf.SerialNumber.Cmp(issued.SerialNumber) != 0:
		t.Errorf("current serial %s, want the renewed %s", cur.Serial(), issued.SerialNumber.Text(16))
	case cur.Serial() == r.first.Serial():
		t.Error("the certificate did not change")
	case cur.Certificate.PrivateKey == r.first.Certificate.PrivateKey:
		t.Error("the key was reused; a renewal makes a new one")
	}
	renewed := r.logs.FilterMessage("certificate renewed").All()[0].ContextMap()
	if at, _ := renewed["certificate_expires_at"].(time.Time); !at.Equal(cur.NotAfter()) {
		t.Errorf("logged expiry %v, want %v", renewed["certificate_expires_at"], cur.NotAfter())
	}

	// Persisted: a restart loads the new key and certificate, and only
	// the new generation's files are left.
	if saved := r.saved(t); saved.Serial() != cur.Serial() {
		t.Errorf("a restart loads serial %s, want %s", saved.Serial(), cur.Serial())
	}
	assertFiles(t, r.f.cfg.StateDir, "agent-2.crt agent-2.key agent.json ca-2.crt")

	// The next renewal is scheduled for the new certificate.
	r.waitLog(t, "certificate renewal scheduled")
	next := r.logs.FilterMessage("certificate renewal scheduled").All()[1].ContextMap()
	if at, _ := next["renew_at"].(time.Time); !at.Equal(RenewalTime(cur.NotBefore(), cur.NotAfter(), 0.5)) {
		t.Errorf("next renewal at %v, want 65%% of the new certificate's lifetime", next["renew_at"])
	}
}

// A certificate due for renewal as soon as issued (here: the agent's clock
// is ahead of the control plane's) does not make the loop spin.
func TestRenewalOfACertificateDueAtOnceIsPaced(t *testing.T) {
	r := newRenewal(t, nil)
	r.run(t)
	// Past the renewal time of the certificates the control plane issues
	// now: each is due as soon as it arrives.
	r.advanceTo(t, r.renewAt().Add(5*time.Minute))
	const paced = "the new certificate is due for renewal as soon as issued: its lifetime is very short, " +
		"or this host's clock is ahead of the control plane's; pacing renewals"
	for i, delay := range []time.Duration{time.Second, 2 * time.Second} {
		r.waitLog(t, paced)
		if got := r.logs.FilterMessage(paced).All()[i].ContextMap()["delay"]; got != delay {
			t.Errorf("renewal %d paced by %v, want %v", i+1, got, delay)
		}
		if n := r.f.srv.RenewCalls(); n != i+1 {
			t.Fatalf("%d renewals, want %d", n, i+1)
		}
		r.advance(t, delay)
	}
	r.waitLog(t, "certificate renewed")
}

func TestRenewalRetriesWithBackoff(t *testing.T) {
	r := newRenewal(t, nil)
	r.f.srv.FailRenew(status.Error(codes.Unavailable, "restarting"), status.Error(codes.Unimplemented, "old control plane"))
	r.run(t)
	r.advanceTo(t, r.renewAt())
	r.waitLog(t, "certificate renewal failed; retrying")
	r.advance(t, time.Second)
	r.waitLog(t, "certificate renewal failed; retrying")
	r.advance(t, 2*time.Second)
	r.waitLog(t, "certificate renewed")

	if n := r.f.srv.RenewCalls(); n != 3 {
		t.Errorf("%d RenewCertificate calls, want 3", n)
	}
	failures := r.logs.FilterMessage("certificate renewal failed; retrying").All()
	for i, want := range []time.Duration{time.Second, 2 * time.Second} {
		fields := failures[i].ContextMap()
		if fields["backoff"] != want || fields["attempt"] != int64(i+1) || fields["error"] == "" {
			t.Errorf("failure %d logged %v, want attempt %d, backoff %v and the error", i+1, fields, i+1, want)
		}
	}
	if hint, _ := failures[1].ContextMap()["hint"].(string); !strings.Contains(hint, "upgrade it") {
		t.Errorf("Unimplemented logged with the hint %q, want advice to upgrade the control plane", hint)
	}
}

func TestRenewalRefusesAnAnswerForAnotherAgent(t *testing.T) {
	r := newRenewal(t, nil)
	r.f.srv.RenewAs("someone-else")
	r.run(t)
	r.advanceTo(t, r.renewAt())
	r.waitLog(t, "certificate renewal failed; retrying")

	fields := r.logs.FilterMessage("certificate renewal failed; retrying").All()[0].ContextMap()
	if msg, _ := fields["error"].(string); !strings.Contains(msg, "unusable") || !strings.Contains(msg, SPIFFEPrefix+r.first.AgentID) {
		t.Errorf("logged error %q, want the unusable answer and the URI SAN it lacks", fields["error"])
	}
	if r.creds.Current().Serial() != r.first.Serial() {
		t.Error("the refused certificate was put in use")
	}
	if saved := r.saved(t); saved.Serial() != r.first.Serial() {
		t.Error("the refused certificate was saved")
	}
	assertFiles(t, r.f.cfg.StateDir, "agent-1.crt agent-1.key agent.json ca-1.crt")
}

func TestRenewalRefusesAServerOutsideTheBundle(t *testing.T) {
	r := newRenewal(t, nil)
	other, err := fakecp.NewCA("not the control plane's CA")
	if err != nil {
		t.Fatal(err)
	}
	// An identity whose CA bundle does not hold the server's CA.
	untrusting := *r.creds.Current()
	untrusting.CAs = x509.NewCertPool()
	untrusting.CAs.AddCert(other.Cert)
	r.creds.set(&untrusting)
	_, err = r.e.Renew(r.ctx, r.creds)
	if err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("got %v, want the server refused for an unknown authority", err)
	}
	if r.f.srv.RenewCalls() != 0 {
		t.Error("the call reached the server")
	}
}

func TestExpiredCertificateRegistersAgain(t *testing.T) {
	tests := []struct {
		name      string
		configure func(*fixture)
	}{
		{"with the configured CA file", nil},
		// Once registered, the agent needs no CA file or pin: it registers
		// again trusting the CA bundle it has.
		{"with the saved CA bundle", func(f *fixture) { f.cfg.CAFile = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRenewal(t, tt.configure)
			r.f.clock.Advance(r.first.NotAfter().Sub(r.f.clock.Now()) + time.Minute)
			r.f.srv.SetCertTTL(12 * time.Hour) // valid at the fake clock's time
			r.run(t)
			r.waitLog(t, "registered again after the certificate expired: the control plane knows this host under a new agent ID")

			if n := r.logs.FilterMessage("the agent's certificate has expired: an expired certificate cannot authenticate, " +
				"not even to renew it, so the agent must register again with a join token").Len(); n != 1 {
				t.Errorf("the expiry was logged %d times, want once", n)
			}
			cur := r.creds.Current()
			if cur.AgentID != "web-1-2" || r.f.srv.Registrations() != 2 || r.f.srv.RenewCalls() != 0 {
				t.Errorf("agent %q after %d registrations and %d renewals; want web-1-2 registered, no renewal",
					cur.AgentID, r.f.srv.Registrations(), r.f.srv.RenewCalls())
			}
			if saved := r.saved(t); saved.AgentID != cur.AgentID || saved.Serial() != cur.Serial() {
				t.Errorf("a restart loads %s/%s, want %s/%s", saved.AgentID, saved.Serial(), cur.AgentID, cur.Serial())
			}
		})
	}
}

func TestExpiredCertificateWithoutTokenKeepsRetrying(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "join.token")
	r := newRenewal(t, func(f *fixture) {
		f.cfg.JoinToken = ""
		f.cfg.JoinTokenFile = tokenFile // not there yet
	})
	r.f.clock.Advance(r.first.NotAfter().Sub(r.f.clock.Now()) + time.Minute)
	r.f.srv.SetCertTTL(12 * time.Hour) // valid at the fake clock's time
	r.run(t)
	r.waitLog(t, "registering again after the certificate expired failed; retrying")

	fields := r.logs.FilterMessage("registering again after the certificate expired failed; retrying").All()[0]
	msg, _ := fields.ContextMap()["error"].(string)
	for _, want := range []string{"expired at", "cannot register again", "join_token_file", tokenFile} {
		if !strings.Contains(msg, want) {
			t.Errorf("logged error %q does not say %q", msg, want)
		}
	}
	if fields.Level != zapcore.ErrorLevel {
		t.Errorf("logged at %v, want error", fields.Level)
	}

	// The operator provides a token: the next attempt registers.
	writeFile(t, tokenFile, []byte(fakecp.JoinToken+"\n"))
	r.advance(t, time.Second)
	r.waitLog(t, "registered again after the certificate expired: the control plane knows this host under a new agent ID")
	if id := r.creds.Current().AgentID; id != "web-1-2" {
		t.Errorf("agent %q, want the new registration web-1-2", id)
	}
}

func TestLoadIgnoresAndRemovesWhatACrashLeft(t *testing.T) {
	tests := []struct {
		name    string
		crash   func(t *testing.T, dir string, first *Identity)
		wantGen string
	}{
		{
			// Crash while writing generation 2: the pointer still names 1.
			name: "before the pointer switched",
			crash: func(t *testing.T, dir string, _ *Identity) {
				key, cert, ca := GenerationFiles(2)
				writeFile(t, filepath.Join(dir, key), []byte("half a key"))
				writeFile(t, filepath.Join(dir, cert), []byte("garbage"))
				writeFile(t, filepath.Join(dir, ca), nil)
				writeFile(t, filepath.Join(dir, ".agent-3.key.tmp-123"), []byte("partial"))
				writeFile(t, filepath.Join(dir, ".agent.json.tmp-456"), []byte(`{"agent_id":`))
			},
			wantGen: "1",
		},
		{
			// Crash after the switch, before the old generation was removed.
			name: "after the pointer switched",
			crash: func(t *testing.T, dir string, first *Identity) {
				copyGeneration(t, dir, 1, 2)
				writeFile(t, filepath.Join(dir, StateFile), []byte(`{"agent_id":"`+first.AgentID+`","generation":2}`))
			},
			wantGen: "2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRenewal(t, nil)
			tt.crash(t, r.f.cfg.StateDir, r.first)
			id := r.saved(t)
			if id.Serial() != r.first.Serial() {
				t.Errorf("loaded serial %s, want %s", id.Serial(), r.first.Serial())
			}
			g := tt.wantGen
			assertFiles(t, r.f.cfg.StateDir, "agent-"+g+".crt agent-"+g+".key agent.json ca-"+g+".crt")
		})
	}
}

func TestLegacyLayoutLoadsAndRenews(t *testing.T) {
	r := newRenewal(t, nil)
	dir := r.f.cfg.StateDir
	// The layout before renewal existed: fixed names, no generation.
	copyGeneration(t, dir, 1, 0)
	writeFile(t, filepath.Join(dir, StateFile), []byte(`{"agent_id":"`+r.first.AgentID+`"}`))
	for _, name := range []string{"agent-1.key", "agent-1.crt", "ca-1.crt"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(r.f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.Load()
	if err != nil {
		t.Fatalf("the legacy layout does not load: %v", err)
	}
	if _, err := e.Renew(r.ctx, e.Credentials(id)); err != nil {
		t.Fatal(err)
	}
	assertFiles(t, dir, "agent-1.crt agent-1.key agent.json ca-1.crt")
}

func TestNewRefusesLooseSecrets(t *testing.T) {
	tests := []struct {
		name    string
		loosen  func(t *testing.T, f *fixture) string // returns the path
		wantErr string
	}{
		{
			name: "key file",
			loosen: func(t *testing.T, f *fixture) string {
				key, _, _ := GenerationFiles(1)
				return filepath.Join(f.cfg.StateDir, key)
			},
			wantErr: "treat it as compromised",
		},
		{
			name: "certificate file",
			loosen: func(t *testing.T, f *fixture) string {
				_, cert, _ := GenerationFiles(1)
				return filepath.Join(f.cfg.StateDir, cert)
			},
		},
		{
			name: "join token file",
			loosen: func(t *testing.T, f *fixture) string {
				f.cfg.JoinToken = ""
				f.cfg.JoinTokenFile = filepath.Join(t.TempDir(), "token")
				writeFile(t, f.cfg.JoinTokenFile, []byte(fakecp.JoinToken))
				return f.cfg.JoinTokenFile
			},
			wantErr: "config: join_token_file:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if _, err := f.enroller(t).Identity(context.Background()); err != nil {
				t.Fatal(err)
			}
			path := tt.loosen(t, f)
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := New(f.cfg)
			if err == nil || !strings.Contains(err.Error(), path+" has mode 0644") ||
				!strings.Contains(err.Error(), "chmod 600 "+path) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want a refusal naming %s, its mode and the chmod to run", err, path)
			}
		})
	}
}

// copyGeneration copies generation from's files to generation to's names.
func copyGeneration(t *testing.T, dir string, from, to uint64) {
	t.Helper()
	k1, c1, a1 := GenerationFiles(from)
	k2, c2, a2 := GenerationFiles(to)
	for src, dst := range map[string]string{k1: k2, c1: c2, a1: a2} {
		data, err := os.ReadFile(filepath.Join(dir, src))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, dst), data)
	}
}

// assertFiles checks the names in dir, sorted and space-separated.
func assertFiles(t *testing.T, dir, want string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != want {
		t.Errorf("state directory holds %q, want %q", got, want)
	}
}
