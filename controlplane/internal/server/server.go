package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/api"
	"flotilla.dev/controlplane/internal/audit"
	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/fsutil"
	"flotilla.dev/controlplane/internal/lease"
	"flotilla.dev/controlplane/internal/logging"
	"flotilla.dev/controlplane/internal/notify"
	"flotilla.dev/controlplane/internal/pki"
	"flotilla.dev/controlplane/internal/ratelimit"
	"flotilla.dev/controlplane/internal/remediation"
	"flotilla.dev/controlplane/internal/rollout"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/work"
	"flotilla.dev/pkg/run"
)

// maxRecvMsgSize bounds one message from any client. Heartbeats and
// requests are a few KiB; nothing legitimate comes near this.
const maxRecvMsgSize = 1 << 20

// maxHeaderListSize bounds a call's metadata (an authorization header is
// well under 1 KiB); maxStreamsPerConn bounds concurrent calls on one
// connection (an agent holds one stream, grpcurl one call).
const (
	maxHeaderListSize = 64 << 10
	maxStreamsPerConn = 1000
)

// flowControlWindow is the HTTP/2 window of every stream and connection.
const flowControlWindow = 64 << 10

// Server is an assembled control plane.
type Server struct {
	// lease keeps this replica's replica/<holder> lease (PostgreSQL
	// only); nil on SQLite. holder is its holder ID ("" on SQLite).
	lease  *lease.Leader
	holder string
	// leaseMetrics count the work leases (replica mode); see workMetrics.
	leaseMetrics *work.Metrics
	// fleetLeader keeps trying to lead the fleet (PostgreSQL only).
	fleetLeader *lease.Leader
	cfg         config.Config
	log         *zap.Logger
	version     string
	store       store.Store
	material    *pki.Material
	registry    *fleet.Registry
	metrics     *prometheus.Registry
	grpc        *grpc.Server
	health      *health.Server

	commandMetrics *commands.Metrics
	dispatcher     *commands.Dispatcher
	commands       *commands.Manager
	// feed wakes the replica's followers (PostgreSQL); follower follows
	// the commands other replicas write (replica mode only).
	feed     store.Feed
	follower *commands.Follower
	rollouts *rollout.Engine
	backups  backupWork
	notifier *notify.Notifier
	// remediation drives the services' memory remediation policies;
	// remediationClaimer holds its work lease (replica mode only).
	remediation        *remediation.Driver
	remediationClaimer *work.Claimer

	opts  options
	audit *audit.Recorder

	// AdminTokenPath is set when this start created the bootstrap admin token.
	AdminTokenPath string
}

// New opens the store, loads or creates TLS material and the admin token,
// loads the fleet and builds the servers. Call Run to serve and Close after.
func New(ctx context.Context, cfg config.Config, log *zap.Logger, version string, opts ...Option) (_ *Server, err error) {
	if err := fsutil.EnsurePrivateDir(cfg.DataDir); err != nil {
		return nil, err
	}
	// Refuse to start on a data directory or secret files others can
	// read: whatever they hold may have leaked, and an operator must look.
	if err := checkDataFiles(cfg, log); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, version: version, metrics: prometheus.NewRegistry(), opts: newOptions(opts)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, step := range []func(context.Context) error{s.openStore, s.joinReplicas, s.loadCredentials, s.buildNotifier, s.buildFleet, s.buildWork, s.loadWork} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.buildGRPC(); err != nil {
		return nil, err
	}
	return s, nil
}

// openStore opens the store the configuration names, or the one of
// WithStoreOpener (see also WithStoreWrapper).
func (s *Server) openStore(ctx context.Context) error {
	open := s.opts.openStore
	if open == nil {
		open = func(ctx context.Context, cfg config.Config) (store.Store, error) {
			return openConfiguredStore(ctx, cfg, s.log)
		}
	}
	st, err := open(ctx, s.cfg)
	if err != nil {
		return err
	}
	s.store = st
	s.feed = store.FeedOf(st) // before any wrapper hides it
	if s.opts.wrapStore != nil {
		s.store = s.opts.wrapStore(s.store)
	}
	return nil
}

// loadCredentials loads or creates the TLS material and the bootstrap admin
// token.
func (s *Server) loadCredentials(ctx context.Context) error {
	cfg := s.cfg
	var err error
	s.material, err = pki.LoadOrCreate(pki.FilesConfig{
		Dir: cfg.DataDir, CACertFile: cfg.TLS.CACertFile, CAKeyFile: cfg.TLS.CAKeyFile,
		ServerCert: cfg.TLS.CertFile, ServerKey: cfg.TLS.KeyFile,
		ServerHosts: pki.DefaultServerHosts(cfg.AdvertiseNames), Now: s.opts.now,
	})
	if err != nil {
		return err
	}
	for _, f := range s.material.Generated {
		s.log.Info("generated TLS material", zap.String("file", f))
	}
	if s.AdminTokenPath, err = auth.EnsureAdminToken(ctx, s.store, cfg.DataDir, s.opts.now()); err != nil {
		return err
	}
	if s.AdminTokenPath != "" {
		s.log.Info("created the bootstrap admin API token; keep it secret", zap.String("file", s.AdminTokenPath))
	}
	return s.writeBootstrapFiles(ctx)
}

// buildFleet builds the registry of agents and loads it from the store.
func (s *Server) buildFleet(ctx context.Context) error {
	var err error
	s.registry, err = fleet.New(fleet.Config{
		Store: s.store, Logger: s.log.Named("fleet"), Now: s.opts.now,
		LostAfter: s.cfg.AgentLostAfter.Std(), ReconnectGrace: s.cfg.AgentReconnectGrace.Std(),
		PersistInterval: s.cfg.HeartbeatPersistInterval.Std(), FlushInterval: s.opts.intervals.StatusFlush,
		Replica: s.fleetReplica(), OnStateChange: s.notifier.OnAgent,
	})
	if err != nil {
		return err
	}
	return s.registry.Load(ctx)
}

// buildWork builds the command dispatcher and manager and the rollout
// engine.
func (s *Server) buildWork(ctx context.Context) error {
	s.commandMetrics = commands.NewMetrics(s.metrics)
	var err error
	if s.dispatcher, err = commands.NewDispatcher(commands.DispatcherConfig{
		Store: s.store, Registry: s.registry, Logger: s.log.Named("commands"), Metrics: s.commandMetrics, Now: s.opts.now,
		DeadlineGrace: s.cfg.CommandDeadlineGrace.Std(), SweepInterval: s.opts.intervals.CommandSweep,
		Replica: s.ReplicaMode(),
	}); err != nil {
		return err
	}
	if s.commands, err = commands.NewManager(commands.ManagerConfig{
		Store: s.store, Registry: s.registry, Dispatcher: s.dispatcher, Logger: s.log.Named("commands"),
		Metrics: s.commandMetrics, Now: s.opts.now, OnFinish: s.notifier.OnCommand,
		// Replica mode (PostgreSQL): each fleet command under its lease.
		Holder: s.holder, Leases: s.store, LeaseTTL: s.cfg.Store.LeaseTTL.Std(), WorkMetrics: s.workMetrics(),
		Feed: store.FeedOf(s.store),
	}); err != nil {
		return err
	}
	if s.ReplicaMode() {
		if s.follower, err = commands.NewFollower(commands.FollowerConfig{
			Store: s.store, Dispatcher: s.dispatcher, Manager: s.commands, Feed: s.feed,
			Logger: s.log.Named("commands"), Now: s.opts.now,
		}); err != nil {
			return err
		}
		// Before any agent's stream: it starts from the changes made now.
		if err := s.follower.Init(ctx); err != nil {
			return err
		}
	}
	// The engine listens to the dispatcher: build it before anything is
	// delivered (loadWork).
	s.rollouts, err = rollout.New(rollout.Config{
		Store: s.store, Registry: s.registry, Dispatcher: s.dispatcher, Logger: s.log.Named("rollouts"),
		Metrics: rollout.NewMetrics(s.metrics), Now: s.opts.now,
		TickInterval: s.opts.intervals.RolloutTick, RetryInterval: s.opts.intervals.RolloutRetry,
		PrometheusURL: s.cfg.Analysis.PrometheusURL,
		// Replica mode (PostgreSQL): each rollout under its lease.
		Holder: s.holder, Leases: s.store, LeaseTTL: s.cfg.Store.LeaseTTL.Std(), WorkMetrics: s.workMetrics(),
		OnStateChange: s.notifier.OnRollout, OnAnalysisFailed: s.notifier.OnAnalysis,
	})
	if err != nil {
		return err
	}
	if err := s.buildRemediation(); err != nil {
		return err
	}
	return s.buildBackups()
}

// loadWork loads the dispatcher, then the commands and rollouts, so that
// they find their host commands in the dispatcher.
// In replica mode the dispatcher holds only the commands of the work this
// replica drives: the fleet commands and rollouts it claims load theirs.
func (s *Server) loadWork(ctx context.Context) error {
	if !s.ReplicaMode() {
		if err := s.dispatcher.Load(ctx); err != nil {
			return err
		}
		if err := s.commands.Load(ctx); err != nil {
			return err
		}
	}
	if err := s.rollouts.Load(ctx); err != nil {
		return err
	}
	return s.loadBackups(ctx)
}

// Registry exposes the live fleet (tests and later subsystems use it).
func (s *Server) Registry() *fleet.Registry { return s.registry }

// Rollouts exposes the rollout engine (tests drive it directly).
func (s *Server) Rollouts() *rollout.Engine { return s.rollouts }

// Metrics is the registry the server's metrics are registered with, as
// /metrics serves it.
func (s *Server) Metrics() prometheus.Gatherer { return s.metrics }

// ServiceInfo lists the gRPC services and methods the server registered.
func (s *Server) ServiceInfo() map[string]grpc.ServiceInfo { return s.grpc.GetServiceInfo() }

// CA exposes the certificate authority.
func (s *Server) CA() *pki.CA { return s.material.CA }

// TLSConfig is the public port's TLS configuration: TLS 1.3 only, client
// certificates verified against the CA when presented (agents present one;
// operators and registering agents do not).
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.material.Server},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.material.CA.Pool(),
		NextProtos:   []string{"h2"},
	}
}

func (s *Server) collectorOptions() []fleet.CollectorOption {
	if s.cfg.PerAgentMetrics {
		return nil
	}
	return []fleet.CollectorOption{fleet.WithoutPerAgentSeries()}
}

func (s *Server) buildGRPC() error {
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets([]float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}),
	))
	s.metrics.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		grpcMetrics,
		fleet.NewCollector(s.registry, s.collectorOptions()...),
	)
	var err error
	if s.audit, err = audit.New(audit.Config{Store: s.store, Logger: s.log.Named("audit"), Registerer: s.metrics, Now: s.opts.now}); err != nil {
		return err
	}
	s.grpc = grpc.NewServer(s.grpcServerOptions(grpcMetrics)...)
	if err := s.registerServices(); err != nil {
		return err
	}
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if err := registerReflection(s.grpc); err != nil {
		return err
	}
	grpcMetrics.InitializeMetrics(withoutAgentStream{s.grpc})
	return nil
}

// grpcServerOptions are the public port's limits, credentials and
// interceptor chains.
func (s *Server) grpcServerOptions(grpcMetrics *grpcprom.ServerMetrics) []grpc.ServerOption {
	authn := auth.NewAuthenticator(s.store, s.opts.now).WithRegisteredAgents(s.registry.Known)
	// Authentication says why it refuses a call with package fault's
	// kinds; the API's mapping makes them the codes callers see.
	authenticate := func(ctx context.Context) (context.Context, error) {
		ctx, err := authn.AuthFunc(ctx)
		return ctx, api.GRPCError(err)
	}
	agentStreams := newAgentStreamMetrics(s.metrics)
	admission := newRegistrationAdmission(s.cfg.RegistrationMaxInFlight, s.metrics, s.log.Named("agents"))
	logUnary, logStream := callLogInterceptors(logging.Interceptor(s.log.Named("grpc")))
	recoveryOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		method, _ := grpc.Method(ctx)
		s.log.Error("panic in gRPC handler", zap.String("method", method), zap.Any("panic", p), zap.Stack("stack"))
		return status.Error(codes.Internal, "internal error; the control plane logged the details")
	})
	return append(s.grpcLimits(),
		// The audit recorder wraps authentication so that refused calls
		// are recorded too; its gate, after authentication, writes the
		// row of an allowed mutating call before the call runs (fail
		// closed). See package audit.
		// The request ID comes first, so that every interceptor after it
		// logs it and a refused call returns it too.
		grpc.ChainUnaryInterceptor(
			logging.UnaryRequestID(),
			grpcMetrics.UnaryServerInterceptor(),
			admission.UnaryServerInterceptor(),
			logUnary,
			s.audit.UnaryServerInterceptor(),
			grpcauth.UnaryServerInterceptor(authenticate),
			s.audit.UnaryGateInterceptor(),
			recovery.UnaryServerInterceptor(recoveryOpt),
		),
		grpc.ChainStreamInterceptor(
			logging.StreamRequestID(),
			agentStreams.interceptor(),
			selector.StreamServerInterceptor(grpcMetrics.StreamServerInterceptor(), notAgentStream),
			logStream,
			grpcauth.StreamServerInterceptor(authenticate),
			recovery.StreamServerInterceptor(recoveryOpt),
		),
	)
}

// grpcLimits are the public port's credentials, buffers and bounds.
func (s *Server) grpcLimits() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(s.TLSConfig())),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		// Bound what one hostile connection can make the server hold:
		// metadata per call and concurrent calls per connection.
		grpc.MaxHeaderListSize(maxHeaderListSize),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		// Per-connection buffers dominate the memory of a large fleet:
		// gRPC's default 32 KiB read buffer sits on top of TLS, which
		// already buffers a whole decrypted record, so reading frames
		// straight from the TLS connection costs no extra system calls;
		// the 32 KiB write buffer goes back to a shared pool after every
		// flush instead of staying with an idle agent. See
		// docs/performance.md for the measurements.
		grpc.ReadBufferSize(0),
		grpc.SharedWriteBuffer(true),
		// Fixed flow-control windows (gRPC's 64 KiB default, stated)
		// turn off the bandwidth estimator, which pings the agent after
		// nearly every heartbeat: a write and a read per heartbeat, a
		// quarter of the control plane's CPU under a large fleet, for
		// windows that small messages never fill anyway.
		grpc.InitialWindowSize(flowControlWindow),
		grpc.InitialConnWindowSize(flowControlWindow),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		// A hard stop (after the shutdown timeout) still waits for the
		// handlers to return, so that Close never closes the store under
		// a handler that is using it.
		grpc.WaitForHandlers(true),
	}
}

// registerServices builds the API services on the subsystems and registers
// them.
func (s *Server) registerServices() error {
	apiMetrics := api.NewMetrics(s.metrics)
	registerLimiter, err := ratelimit.New(ratelimit.Config{
		Rate: s.cfg.RegistrationRateLimit.PerMinute, Per: time.Minute, Burst: s.cfg.RegistrationRateLimit.Burst, Now: s.opts.now,
	})
	if err != nil {
		return fmt.Errorf("registration_rate_limit: %w", err)
	}
	agentSvc, err := api.NewAgentService(api.AgentServiceConfig{
		Store: s.store, Registry: s.registry, CA: s.material.CA, Logger: s.log.Named("agents"), Now: s.opts.now,
		Version: s.version, CertValidity: s.cfg.AgentCertValidity.Std(), Metrics: apiMetrics, Commands: s.dispatcher,
		RegisterLimiter: registerLimiter,
	})
	if err != nil {
		return err
	}
	fleetSvc, err := api.NewFleetService(api.FleetServiceConfig{
		Store: s.store, Registry: s.registry, CA: s.material.CA, Logger: s.log.Named("api"), Commands: s.commands, Now: s.opts.now,
	})
	if err != nil {
		return err
	}
	rolloutSvc, err := api.NewRolloutService(api.RolloutServiceConfig{Engine: s.rollouts, Remediations: s.store})
	if err != nil {
		return err
	}
	adminSvc, err := api.NewAdminService(api.AdminServiceConfig{
		Store: s.store, Registry: s.registry, CA: s.material.CA, Logger: s.log.Named("admin"), Now: s.opts.now,
	})
	if err != nil {
		return err
	}
	flotillav1.RegisterAgentServiceServer(s.grpc, agentSvc)
	flotillav1.RegisterFleetServiceServer(s.grpc, fleetSvc)
	flotillav1.RegisterRolloutServiceServer(s.grpc, rolloutSvc)
	flotillav1.RegisterAdminServiceServer(s.grpc, adminSvc)
	backupSvc, err := api.NewBackupService(api.BackupServiceConfig{Policies: s.backups.policies})
	if err != nil {
		return err
	}
	flotillav1.RegisterBackupServiceServer(s.grpc, backupSvc)
	notifySvc, err := api.NewNotificationService(api.NotificationServiceConfig{
		Store: s.store, Notifier: s.notifier, Logger: s.log.Named("notify"), Now: s.opts.now,
	})
	if err != nil {
		return err
	}
	flotillav1.RegisterNotificationServiceServer(s.grpc, notifySvc)
	return nil
}

// Run serves until ctx ends, then stops gracefully within the shutdown
// timeout. Listeners are opened here so that callers may pass ":0".
func (s *Server) Run(ctx context.Context, grpcLis, httpLis net.Listener) error {
	httpSrv := &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	s.setServing(true)
	s.log.Info("control plane serving",
		zap.String("version", s.version), zap.String("grpc", grpcLis.Addr().String()),
		zap.String("http", httpLis.Addr().String()), zap.String("ca_sha256", s.material.CA.Fingerprint()),
		zap.Duration("agent_lost_after", s.registry.LostAfter()))
	tasks := []run.Task{
		{Name: "grpc", Run: func(ctx context.Context) error {
			errc := make(chan error, 1)
			go func() { errc <- s.grpc.Serve(grpcLis) }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			s.setServing(false)
			s.registry.CloseSessions(fleet.ErrShuttingDown)
			s.stopGRPC()
			// A stop that came before Serve began makes Serve report
			// the server stopped: that is the stop asked for.
			if err := <-errc; !errors.Is(err, grpc.ErrServerStopped) {
				return err
			}
			return nil
		}},
		{Name: "http", Run: func(ctx context.Context) error {
			errc := make(chan error, 1)
			go func() { errc <- httpSrv.Serve(httpLis) }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout.Std())
			defer cancel()
			_ = httpSrv.Shutdown(sctx)
			if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}},
		{Name: "liveness", Run: s.registry.RunLiveness},
		{Name: "status-flusher", Run: s.registry.RunFlusher},
		{Name: "command-deadlines", Run: s.dispatcher.Run},
		{Name: "rollouts", Run: s.rollouts.Run},
		{Name: "store-health", Run: s.watchStore},
		{Name: "notifications", Run: s.notifier.Run},
	}
	if s.follower != nil {
		tasks = append(tasks, run.Task{Name: "command-leases", Run: s.commands.Run},
			run.Task{Name: "command-follower", Run: s.follower.Run})
	}
	tasks = append(tasks, s.replicaTasks()...)
	tasks = append(tasks, s.backupTasks()...)
	tasks = append(tasks, s.remediationTask())
	return run.All(ctx, tasks...)
}

// stopGRPC stops gracefully, then hard after the shutdown timeout: agent
// streams never end on their own, so a graceful stop alone would hang.
func (s *Server) stopGRPC() {
	run.Stop(s.cfg.ShutdownTimeout.Std(), s.grpc.GracefulStop, func() {
		s.log.Warn("graceful stop timed out; closing remaining connections", zap.Duration("timeout", s.cfg.ShutdownTimeout.Std()))
		s.grpc.Stop()
	})
}

func (s *Server) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	for _, svc := range []string{flotillav1.AgentService_ServiceDesc.ServiceName, flotillav1.FleetService_ServiceDesc.ServiceName,
		flotillav1.RolloutService_ServiceDesc.ServiceName, flotillav1.AdminService_ServiceDesc.ServiceName,
		flotillav1.BackupService_ServiceDesc.ServiceName, flotillav1.NotificationService_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(svc, st)
	}
}

// watchStore reflects the store's health in the gRPC health service, so a
// load balancer stops sending traffic to a replica whose store is gone.
func (s *Server) watchStore(ctx context.Context) error {
	healthy := true
	return run.Every(ctx, 5*time.Second, func(ctx context.Context) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.store.Ping(pctx)
		cancel()
		if ok := err == nil; ok != healthy && ctx.Err() == nil {
			healthy = ok
			s.setServing(ok)
			if ok {
				s.log.Info("store answers again; serving")
			} else {
				s.log.Error("store does not answer; reporting NOT_SERVING", zap.Error(err))
			}
		}
	})
}

// Close releases the store. Call it after Run returned.
func (s *Server) Close() {
	if s.lease != nil {
		// The others need not wait for the lease to expire.
		s.lease.Release(context.Background())
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.log.Warn("closing the store", zap.Error(err))
		}
		s.store = nil
	}
}

// Listen opens the configured listeners.
func Listen(cfg config.Config) (grpcLis, httpLis net.Listener, err error) {
	grpcLis, err = net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return nil, nil, fmt.Errorf("listen_address: %w", err)
	}
	httpLis, err = net.Listen("tcp", cfg.MetricsAddress)
	if err != nil {
		grpcLis.Close()
		return nil, nil, fmt.Errorf("metrics_address: %w", err)
	}
	return grpcLis, httpLis, nil
}
