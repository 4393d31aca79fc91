package servertest

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/server"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// Option adjusts the control plane Start builds.
type Option func(*settings)

type settings struct {
	dataDir    string
	log        *zap.Logger
	adjust     []func(*config.Config)
	open       server.StoreOpener
	serverOpts []server.Option
	beforeRun  []func(*server.Server)
}

// WithDataDir runs the control plane in dir (it must exist or be creatable
// with mode 0700) instead of a fresh t.TempDir().
func WithDataDir(dir string) Option { return func(s *settings) { s.dataDir = dir } }

// WithConfig adjusts the configuration after the test defaults are set
// (several adjustments apply in order).
func WithConfig(adjust func(*config.Config)) Option {
	return func(s *settings) { s.adjust = append(s.adjust, adjust) }
}

// WithLogger logs to log instead of the test's log.
func WithLogger(log *zap.Logger) Option { return func(s *settings) { s.log = log } }

// WithStore opens the store with open (see server.WithStoreOpener) instead
// of SQLite in the data directory. open is called at every start.
func WithStore(open server.StoreOpener) Option { return func(s *settings) { s.open = open } }

// WithClock makes the control plane read the time from now.
func WithClock(now func() time.Time) Option {
	return WithServerOptions(server.WithClock(now))
}

// WithIntervals shortens (or lengthens) the background loops' periods.
func WithIntervals(iv server.Intervals) Option {
	return WithServerOptions(server.WithIntervals(iv))
}

// WithServerOptions passes options on to server.New.
func WithServerOptions(opts ...server.Option) Option {
	return func(s *settings) { s.serverOpts = append(s.serverOpts, opts...) }
}

// BeforeRun calls prepare with every server New built, before it serves
// (a test hook on a subsystem goes in here, before any loop runs).
func BeforeRun(prepare func(*server.Server)) Option {
	return func(s *settings) { s.beforeRun = append(s.beforeRun, prepare) }
}

// SQLite is the default store: the SQLite file of the configuration
// (store.path, in the data directory).
func SQLite(ctx context.Context, cfg config.Config) (store.Store, error) {
	return sqlite.Open(ctx, cfg.Store.Path)
}

// defaultStore is the store of control planes on dataDir started without
// WithStore, and the configuration it needs: the one place to switch the
// suites to another driver (StoreEnv).
func defaultStore(t testing.TB, dataDir string) (server.StoreOpener, func(*config.Config)) {
	t.Helper()
	if Driver() == config.DriverPostgres {
		return postgresStore(t, dataDir)
	}
	return SQLite, nil
}

// ControlPlane is one running control plane.
type ControlPlane struct {
	t        testing.TB
	settings settings
	cfg      config.Config

	// Server is the control plane as server.New built it.
	Server *server.Server
	// AdminToken is the secret of the bootstrap admin API token.
	AdminToken string
	// HTTPAddr is the address of /metrics and /healthz.
	HTTPAddr string

	lis    *bufconn.Listener
	store  store.Store
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	// stopped is set once Stop began.
	stopped atomic.Bool
}

// Start builds a control plane with server.New and serves it until the test
// ends (or Stop). It fails the test if the control plane does not start.
func Start(t testing.TB, opts ...Option) *ControlPlane {
	t.Helper()
	var s settings
	for _, o := range opts {
		o(&s)
	}
	if s.dataDir == "" {
		s.dataDir = t.TempDir()
	}
	if s.open == nil {
		var adjust func(*config.Config)
		s.open, adjust = defaultStore(t, s.dataDir)
		// First, so that a test's own adjustments win.
		s.adjust = append([]func(*config.Config){adjust}, s.adjust...)
	}
	if s.log == nil {
		s.log = zap.NewNop()
		if tt, ok := t.(*testing.T); ok {
			s.log = zaptest.NewLogger(tt)
		}
	}
	return start(t, s)
}

// Config is the configuration of a test control plane in dataDir: the
// defaults, a store file in dataDir, agents lost after 30s, a 2s shutdown,
// then adjust in order.
func Config(dataDir string, adjust ...func(*config.Config)) config.Config {
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.Store.Path = filepath.Join(dataDir, "flotilla.db")
	cfg.AgentLostAfter = config.Duration(30 * time.Second)
	cfg.ShutdownTimeout = config.Duration(2 * time.Second)
	for _, a := range adjust {
		if a != nil {
			a(&cfg)
		}
	}
	return cfg
}

func start(t testing.TB, s settings) *ControlPlane {
	t.Helper()
	cp := &ControlPlane{t: t, settings: s, cfg: Config(s.dataDir, s.adjust...), done: make(chan error, 1)}
	open := server.WithStoreOpener(func(ctx context.Context, cfg config.Config) (store.Store, error) {
		st, err := s.open(ctx, cfg)
		cp.store = st
		return st, err
	})
	srv, err := server.New(context.Background(), cp.cfg, s.log, "test", append([]server.Option{open}, s.serverOpts...)...)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	cp.Server = srv
	for _, prepare := range s.beforeRun {
		prepare(srv)
	}
	admin, err := os.ReadFile(filepath.Join(s.dataDir, auth.AdminTokenFile))
	if err != nil {
		srv.Close()
		t.Fatalf("admin token: %v", err)
	}
	cp.AdminToken = strings.TrimSpace(string(admin))
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	cp.HTTPAddr = httpLis.Addr().String()
	cp.lis = bufconn.Listen(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	cp.cancel = cancel
	go func() { cp.done <- srv.Run(ctx, cp.lis, httpLis) }()
	t.Cleanup(cp.Stop)
	return cp
}

// Stop ends Run (a graceful stop within the shutdown timeout, as on
// SIGTERM) and closes the server and its store. It reports an error of Run
// to the test. Calling it again does nothing.
func (cp *ControlPlane) Stop() {
	cp.once.Do(func() {
		cp.stopped.Store(true)
		cp.cancel()
		if err := <-cp.done; err != nil {
			cp.t.Errorf("Run: %v", err)
		}
		cp.Server.Close()
	})
}

// Stopped reports whether Stop was called.
func (cp *ControlPlane) Stopped() bool { return cp.stopped.Load() }

// Restart stops the control plane and starts a new one with the same
// options on the same data directory and store.
func (cp *ControlPlane) Restart() *ControlPlane {
	cp.t.Helper()
	cp.Stop()
	return start(cp.t, cp.settings)
}

// Config is the configuration the control plane runs with.
func (cp *ControlPlane) Config() config.Config { return cp.cfg }

// DataDir is the control plane's data directory.
func (cp *ControlPlane) DataDir() string { return cp.cfg.DataDir }

// Store is the store the control plane opened (before any wrapper of
// server.WithStoreWrapper), for tests that seed or inspect state. The
// control plane closes it.
func (cp *ControlPlane) Store() store.Store { return cp.store }

// Listener is the in-memory listener the gRPC server serves on.
func (cp *ControlPlane) Listener() *bufconn.Listener { return cp.lis }

// ClientTLS is a client TLS configuration that trusts the control plane's
// CA and presents certs (none for operators with a token, or a registering
// agent).
func (cp *ControlPlane) ClientTLS(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: cp.Server.CA().Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13, Certificates: certs}
}

// Dial connects to the control plane over bufconn with tlsCfg; the
// connection is closed when the test ends.
func (cp *ControlPlane) Dial(tlsCfg *tls.Config) *grpc.ClientConn {
	cp.t.Helper()
	conn, err := DialListener(cp.lis, tlsCfg)
	if err != nil {
		cp.t.Fatal(err)
	}
	cp.t.Cleanup(func() { conn.Close() })
	return conn
}

// DialListener connects to a bufconn listener with tlsCfg.
func DialListener(lis *bufconn.Listener, tlsCfg *tls.Config) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
}

// Bearer is ctx carrying an API token, as grpcurl and the CLI send it.
func Bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
