package rollout_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/pki"
	"flotilla.dev/controlplane/internal/rollout"
	controlplane "flotilla.dev/controlplane/internal/server"
	"flotilla.dev/controlplane/internal/server/servertest"
	"flotilla.dev/controlplane/internal/store"
)

func TestMain(m *testing.M) { servertest.Main(m) }

// The service every test rolls out.
const (
	serviceName = "web"
	appName     = "app"
	oldImage    = "registry.example/app:1.0"
	newImage    = "registry.example/app:2.0"
	upstream    = "app"
	serverPort  = 8080
)

// waitFor bounds every wait: generous, so that a loaded machine does not
// fail a correct run; a hang still fails in seconds.
const waitFor = 20 * time.Second

// clusterOptions shape a test fleet.
type clusterOptions struct {
	web       int           // web hosts: web-01, web-02, ...
	lb        bool          // one load-balancer agent, lb-1
	lostAfter time.Duration // agent_lost_after (default 2s)
	tick      time.Duration // engine tick (default 10ms)
	heartbeat time.Duration // fake agents' heartbeat interval (default 10ms)
	quiet     bool          // no logs (benchmarks)
}

// cluster is a control plane (the real one, servertest on server.New, over
// bufconn with mTLS) and a fleet of fake agents that speak the real
// protocol. The control plane can be killed and started again on the same
// store while the agents keep their journals.
type cluster struct {
	t       testing.TB
	opts    clusterOptions
	dataDir string
	ca      *pki.CA
	agents  []*fakeAgent // web agents, by ID
	lb      *fakeAgent
	byID    map[string]*fakeAgent

	agentCtx    context.Context
	agentCancel context.CancelFunc
	agentWG     sync.WaitGroup

	mu   sync.Mutex
	cp   *servertest.ControlPlane
	hook func(ctx context.Context, rolloutID string) // for the next control plane
}

func newCluster(t testing.TB, opts clusterOptions) *cluster {
	t.Helper()
	c := &cluster{t: t, opts: opts.withDefaults(), dataDir: dbDir(t), byID: make(map[string]*fakeAgent)}
	c.agentCtx, c.agentCancel = context.WithCancel(context.Background())
	// A first control plane makes the CA and the store; the agents are
	// registered in it, as Register would, under the IDs the tests name.
	first := servertest.Start(t, c.options()...)
	c.ca = first.Server.CA()
	c.registerFleet(first.Store())
	first.Stop()
	t.Cleanup(c.close)
	return c
}

func (opts clusterOptions) withDefaults() clusterOptions {
	if opts.lostAfter == 0 {
		// Not the 1s minimum: a loaded machine running the race detector
		// must not lose healthy agents.
		opts.lostAfter = 2 * time.Second
	}
	if opts.tick == 0 {
		opts.tick = 10 * time.Millisecond
	}
	if opts.heartbeat == 0 {
		opts.heartbeat = 10 * time.Millisecond
	}
	return opts
}

// registerFleet registers the cluster's agents in st.
func (c *cluster) registerFleet(st store.Store) {
	c.t.Helper()
	secret := "fjt_test"
	now := time.Now()
	if err := st.CreateJoinToken(context.Background(), store.JoinToken{ID: "jt-test", Hash: auth.HashSecret(secret),
		MaxUses: 1 << 30, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}); err != nil {
		c.t.Fatal(err)
	}
	for i := 1; i <= c.opts.web; i++ {
		id := fmt.Sprintf("web-%02d", i)
		a := c.register(st, secret, id, map[string]string{"role": "web", "address": fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)}, true)
		c.agents = append(c.agents, a)
	}
	if c.opts.lb {
		c.lb = c.register(st, secret, "lb-1", map[string]string{"role": "lb"}, false)
	}
}

// options are the control plane's: the cluster's data directory, loops
// fast enough for tests, and the commit hook.
func (c *cluster) options() []servertest.Option {
	return []servertest.Option{
		servertest.WithDataDir(c.dataDir),
		servertest.WithLogger(c.logger()),
		servertest.WithConfig(func(cfg *config.Config) {
			cfg.AgentLostAfter = config.Duration(c.opts.lostAfter)
			// A stop is a kill: streams are cut at once.
			cfg.ShutdownTimeout = config.Duration(10 * time.Millisecond)
		}),
		servertest.WithIntervals(controlplane.Intervals{RolloutTick: c.opts.tick, RolloutRetry: 50 * time.Millisecond,
			CommandSweep: 20 * time.Millisecond, StatusFlush: 100 * time.Millisecond}),
		servertest.BeforeRun(func(srv *controlplane.Server) {
			c.mu.Lock()
			hook := c.hook
			c.mu.Unlock()
			if hook != nil {
				rollout.SetCommitHook(srv.Rollouts(), hook)
			}
		}),
	}
}

// register stores an agent and gives it a certificate.
func (c *cluster) register(st store.AgentStore, secret, id string, labels map[string]string, hasApp bool) *fakeAgent {
	c.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}, key)
	if err != nil {
		c.t.Fatal(err)
	}
	leaf, certPEM, err := c.ca.SignAgent(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), id, 24*time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		c.t.Fatal(err)
	}
	now := time.Now()
	_, err = st.RegisterAgent(context.Background(), auth.HashSecret(secret), now, func(store.JoinToken) (store.Agent, error) {
		return store.Agent{ID: id, Hostname: id, Labels: labels, State: store.AgentDisconnected, StateReason: "registered",
			StateChangedAt: now, RegisteredAt: now, CertSerial: pki.SerialHex(leaf), CertNotAfter: leaf.NotAfter}, nil
	})
	if err != nil {
		c.t.Fatalf("register %s: %v", id, err)
	}
	a := &fakeAgent{c: c, id: id, labels: labels, cert: pair, hasApp: hasApp, journal: make(map[string]*flotillav1.CommandEvent),
		executed: make(map[string]int), unhealthy: make(map[string]bool)}
	if hasApp {
		a.image, a.port = oldImage, serverPort
	}
	c.byID[id] = a
	return a
}

func (c *cluster) logger() *zap.Logger {
	if c.opts.quiet {
		return zap.NewNop()
	}
	if tt, ok := c.t.(*testing.T); ok {
		return zaptest.NewLogger(tt, zaptest.Level(zapcore.InfoLevel))
	}
	return zap.NewNop()
}

// startCP starts a control plane on the cluster's data directory and store.
func (c *cluster) startCP() {
	c.t.Helper()
	cp := servertest.Start(c.t, c.options()...)
	c.mu.Lock()
	c.cp = cp
	c.mu.Unlock()
}

// stopCP stops the control plane the way the binary stops: streams are cut
// (the shutdown timeout is a few milliseconds), its loops stop and the
// store is closed.
func (c *cluster) stopCP() {
	c.mu.Lock()
	cp := c.cp
	c.cp = nil
	c.mu.Unlock()
	if cp != nil {
		cp.Stop()
	}
}

// restartCP kills the control plane and starts a fresh one on the same store.
func (c *cluster) restartCP() {
	c.t.Helper()
	c.stopCP()
	c.startCP()
}

func (c *cluster) current() *servertest.ControlPlane {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cp == nil {
		c.t.Fatal("no control plane running")
	}
	return c.cp
}

func (c *cluster) engine() *rollout.Engine { return c.current().Server.Rollouts() }

func (c *cluster) listener() *bufconn.Listener {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cp == nil {
		return nil
	}
	return c.cp.Listener()
}

func (c *cluster) close() {
	c.agentCancel()
	c.agentWG.Wait()
	c.stopCP()
}

// start starts the control plane and every agent, and waits until all
// agents are connected and have reported their containers.
func (c *cluster) start() {
	c.t.Helper()
	c.startCP()
	c.startAgents()
}

// startAgents starts every agent and waits until all are connected to the
// current control plane and have reported their containers.
func (c *cluster) startAgents() {
	c.t.Helper()
	var all []*fakeAgent
	all = append(all, c.agents...)
	if c.lb != nil {
		all = append(all, c.lb)
	}
	for _, a := range all {
		a.start()
	}
	c.waitConnected(all...)
}

func (c *cluster) waitConnected(agents ...*fakeAgent) {
	c.t.Helper()
	eventually(c.t, "agents to connect", func() bool {
		reg := c.current().Server.Registry()
		for _, a := range agents {
			got, ok := reg.Get(a.id)
			if !ok || got.Record.State != store.AgentConnected || got.LastHeartbeat == nil {
				return false
			}
		}
		return true
	})
}

// operator is the context of an admin's call.
func operator() context.Context {
	return auth.WithPrincipal(context.Background(), auth.Principal{Kind: "operator", ID: "at-test", Role: auth.RoleAdmin})
}

// service is the test service: container app on role=web, behind lb-1
// when the cluster has it.
func (c *cluster) service(strategy *flotillav1.RolloutStrategy) *flotillav1.Service {
	svc := &flotillav1.Service{Name: serviceName, Container: appName, Selector: "role=web", HealthUrl: "http://127.0.0.1:8080/health",
		DefaultStrategy: strategy}
	if c.lb != nil {
		svc.LoadBalancer = &flotillav1.LoadBalancer{Selector: "role=lb", Upstream: upstream, ServerPort: serverPort}
	}
	return svc
}

func (c *cluster) putService(strategy *flotillav1.RolloutStrategy) {
	c.t.Helper()
	if _, err := c.engine().PutService(operator(), c.service(strategy)); err != nil {
		c.t.Fatalf("PutService: %v", err)
	}
}

func (c *cluster) startRollout(image string, strategy *flotillav1.RolloutStrategy) *flotillav1.Rollout {
	c.t.Helper()
	r, err := c.engine().StartRollout(operator(), &flotillav1.StartRolloutRequest{Service: serviceName, Image: image, Strategy: strategy, Reason: "test"}, "operator:at-1")
	if err != nil {
		c.t.Fatalf("StartRollout: %v", err)
	}
	return r
}

func (c *cluster) get(id string) *flotillav1.Rollout {
	c.t.Helper()
	r, err := c.engine().GetRollout(operator(), id)
	if err != nil {
		c.t.Fatalf("GetRollout: %v", err)
	}
	return r
}

// waitState waits for the rollout to reach one of states and returns it.
func (c *cluster) waitState(id string, states ...flotillav1.RolloutState) *flotillav1.Rollout {
	c.t.Helper()
	var last *flotillav1.Rollout
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		r, err := c.engine().GetRollout(operator(), id)
		if err == nil {
			last = r
			for _, s := range states {
				if r.GetState() == s {
					return r
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("rollout %s did not reach %v; last:\n%s", id, states, describe(last))
	return nil
}

func (c *cluster) waitHost(id, agent string, step flotillav1.HostStep) {
	c.t.Helper()
	eventually(c.t, agent+" to reach "+step.String(), func() bool {
		return hostOf(c.get(id), agent).GetStep() == step
	})
}

// history returns the rollout's events as WatchRollout streams them (the
// rollout must have ended, so that the watch ends).
func (c *cluster) history(id string) []*flotillav1.RolloutEvent {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(operator(), waitFor)
	defer cancel()
	var evs []*flotillav1.RolloutEvent
	if err := c.engine().WatchRollout(ctx, id, func(ev *flotillav1.RolloutEvent) error {
		evs = append(evs, ev)
		return nil
	}); err != nil {
		c.t.Fatalf("WatchRollout: %v", err)
	}
	return evs
}

func hostOf(r *flotillav1.Rollout, agent string) *flotillav1.RolloutHost {
	for _, h := range r.GetHosts() {
		if h.GetAgentId() == agent {
			return h
		}
	}
	return nil
}

func describe(r *flotillav1.Rollout) string {
	if r == nil {
		return "<none>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %q batch %d\n", r.GetId(), r.GetState(), r.GetMessage(), r.GetCurrentBatch())
	for _, h := range r.GetHosts() {
		fmt.Fprintf(&b, "  %s batch %d %s rb=%v prev=%q %q\n", h.GetAgentId(), h.GetBatch(), h.GetStep(), h.GetRollingBack(), h.GetPreviousImage(), h.GetMessage())
	}
	return b.String()
}

// hostSteps groups the host events of a history by agent.
func hostSteps(evs []*flotillav1.RolloutEvent) map[string][]flotillav1.HostStep {
	out := make(map[string][]flotillav1.HostStep)
	for _, ev := range evs {
		if h := ev.GetHost(); h != nil {
			out[h.GetAgentId()] = append(out[h.GetAgentId()], h.GetStep())
		}
	}
	return out
}

// checkSequence checks that a history is numbered 1, 2, 3, ... and ends
// with a final state.
func checkSequence(t testing.TB, evs []*flotillav1.RolloutEvent) {
	t.Helper()
	for i, ev := range evs {
		if ev.GetSequence() != int64(i+1) {
			t.Fatalf("event %d has sequence %d", i, ev.GetSequence())
		}
	}
	if len(evs) == 0 || !rollout.Terminal(evs[len(evs)-1].GetState().GetState()) {
		t.Fatalf("history does not end with a final state: %v", evs[len(evs)-1:])
	}
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitFor, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// strategy is a fast strategy for tests: batches of size, health gates of
// 30ms within 2s.
func strategy(size int32) *flotillav1.RolloutStrategy {
	return &flotillav1.RolloutStrategy{
		Batch:           &flotillav1.RolloutStrategy_BatchSize{BatchSize: size},
		MinHealthyTime:  durationpb.New(30 * time.Millisecond),
		HealthyDeadline: durationpb.New(2 * time.Second),
	}
}

// fakeAgent is an agent that speaks the real protocol: hello, journal
// report, heartbeats with the app's health, command events with results.
// It keeps its journal across reconnects like the real agent: a command ID
// it has seen is answered with its latest event, never run again.
type fakeAgent struct {
	c      *cluster
	id     string
	labels map[string]string
	cert   tls.Certificate
	hasApp bool

	mu          sync.Mutex
	started     bool
	image       string
	journal     map[string]*flotillav1.CommandEvent
	executed    map[string]int
	order       []string // command IDs in the order they were executed
	restarts    []string // images restarted to
	lbLog       []string // "drain <server>", "undrain <server>"
	unhealthy   map[string]bool
	failPull    bool
	failRestart bool
	delay       time.Duration // before a command's outcome
	hold        chan struct{} // when set, commands wait for it to close before their outcome
	freezeOn    string        // "restart": fall silent on receiving a restart; "after-restart": after doing it
	frozen      bool          // silent: no events, no heartbeats, no reconnect

	// Blue-green: the live container's host port, the candidate and the
	// previous container (image and port; "" when absent), and for the
	// load balancer its upstream's servers.
	port                   int32
	nextImage, prevImage   string
	nextPort, prevPort     int32
	servers                []string
	candidates, swapCounts int

	// endSession ends the current stream (the agent reconnects unless
	// frozen).
	endSession context.CancelFunc

	sendMu sync.Mutex
	stream grpc.BidiStreamingClient[flotillav1.ConnectRequest, flotillav1.ConnectResponse]
}

func (a *fakeAgent) start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		return
	}
	a.started = true
	a.c.agentWG.Add(1)
	go func() {
		defer a.c.agentWG.Done()
		a.run(a.c.agentCtx)
	}()
}

func (a *fakeAgent) set(f func(a *fakeAgent)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

func (a *fakeAgent) currentImage() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.image
}

func (a *fakeAgent) run(ctx context.Context) {
	for ctx.Err() == nil {
		a.mu.Lock()
		frozen := a.frozen
		a.mu.Unlock()
		if !frozen {
			a.session(ctx)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// session runs one stream until it breaks.
func (a *fakeAgent) session(ctx context.Context) {
	lis := a.c.listener()
	if lis == nil {
		return
	}
	conn, err := servertest.DialListener(lis, &tls.Config{RootCAs: a.c.ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{a.cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		return
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.set(func(a *fakeAgent) { a.endSession = cancel })
	stream, err := flotillav1.NewAgentServiceClient(conn).Connect(sctx)
	if err != nil {
		return
	}
	if err := stream.Send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Hello{Hello: &flotillav1.Hello{
		AgentId: a.id, Version: "fake", Hostname: a.id, Labels: a.labels, Containers: a.containers(), StartedAt: timestamppb.Now(),
	}}}); err != nil {
		return
	}
	if first, err := stream.Recv(); err != nil || first.GetWelcome() == nil {
		return
	}
	a.sendMu.Lock()
	a.stream = stream
	a.sendMu.Unlock()
	defer func() {
		a.sendMu.Lock()
		a.stream = nil
		a.sendMu.Unlock()
	}()
	a.mu.Lock()
	report := &flotillav1.JournalReport{}
	for _, ev := range a.journal {
		report.Entries = append(report.Entries, ev)
	}
	a.mu.Unlock()
	a.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_JournalReport{JournalReport: report}})
	a.heartbeat()
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(a.c.opts.heartbeat)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				a.heartbeat()
			}
		}
	}()
	defer func() { <-hbDone }()
	defer cancel()
	for {
		msg, err := stream.Recv()
		if err != nil {
			return
		}
		if cmd := msg.GetCommand(); cmd != nil {
			a.handle(cmd)
		}
	}
}

func (a *fakeAgent) containers() []*flotillav1.ManagedContainer {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.hasApp {
		return nil
	}
	return []*flotillav1.ManagedContainer{{Name: appName, ContainerId: "c-" + a.id, Image: a.image, State: "running", HostPorts: []int32{a.port}}}
}

func (a *fakeAgent) heartbeat() {
	a.mu.Lock()
	if a.frozen {
		a.mu.Unlock()
		return
	}
	var app *flotillav1.AppHealth
	if a.hasApp {
		healthy := !a.unhealthy[a.image]
		app = &flotillav1.AppHealth{Url: "http://127.0.0.1:8080/health", Healthy: healthy, Status: "healthy", Database: "ok", Cache: "ok", HttpStatus: 200}
		if !healthy {
			app.Status, app.HttpStatus, app.Error = "unhealthy", 503, "status is unhealthy (test)"
		}
	}
	a.mu.Unlock()
	a.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Heartbeat{Heartbeat: &flotillav1.Heartbeat{
		ObservedAt: timestamppb.Now(), Host: &flotillav1.HostMetrics{CpuPercent: 10}, App: app, Containers: a.containers(),
	}}})
}

func (a *fakeAgent) send(msg *flotillav1.ConnectRequest) {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	if a.stream != nil {
		_ = a.stream.Send(msg)
	}
}

func (a *fakeAgent) sendEvent(ev *flotillav1.CommandEvent) {
	a.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_CommandEvent{CommandEvent: ev}})
}

// handle takes one delivery of a command: a journaled ID gets its latest
// event again; a new one is journaled, accepted and executed.
func (a *fakeAgent) handle(cmd *flotillav1.Command) {
	id := cmd.GetId()
	a.mu.Lock()
	if a.frozen {
		a.mu.Unlock()
		return
	}
	if ev, ok := a.journal[id]; ok {
		a.mu.Unlock()
		a.sendEvent(ev)
		return
	}
	a.executed[id]++
	a.order = append(a.order, id)
	accepted := &flotillav1.CommandEvent{CommandId: id, State: flotillav1.CommandState_COMMAND_STATE_ACCEPTED, Message: "accepted", At: timestamppb.Now()}
	a.journal[id] = accepted
	if a.freezeOn == "restart" && cmd.GetSpec().GetRestart() != nil {
		a.frozen = true // the host died as it received the restart
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	a.sendEvent(accepted)
	a.c.agentWG.Add(1)
	go func() {
		defer a.c.agentWG.Done()
		a.execute(cmd)
	}()
}

func (a *fakeAgent) execute(cmd *flotillav1.Command) {
	a.mu.Lock()
	delay, hold := a.delay, a.hold
	a.mu.Unlock()
	if hold != nil {
		select {
		case <-a.c.agentCtx.Done():
			return
		case <-hold:
		}
	}
	if delay > 0 {
		select {
		case <-a.c.agentCtx.Done():
			return
		case <-time.After(delay):
		}
	}
	id := cmd.GetId()
	ev := &flotillav1.CommandEvent{CommandId: id, State: flotillav1.CommandState_COMMAND_STATE_SUCCEEDED, Message: "done", At: timestamppb.Now()}
	a.mu.Lock()
	if a.frozen {
		a.mu.Unlock()
		return
	}
	restarted := false
	switch k := cmd.GetSpec().GetKind().(type) {
	case *flotillav1.CommandSpec_Pull:
		if a.failPull {
			ev.State, ev.Message = flotillav1.CommandState_COMMAND_STATE_FAILED, "pull failed: registry unreachable (test)"
		} else {
			ev.Result = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Pull{Pull: &flotillav1.PullResult{Image: k.Pull.GetImage()}}}
		}
	case *flotillav1.CommandSpec_Restart:
		if a.failRestart {
			ev.State, ev.Message = flotillav1.CommandState_COMMAND_STATE_FAILED, "the new container exited at once; the previous one was put back (test)"
			break
		}
		prev := a.image
		if img := k.Restart.GetImage(); img != "" {
			a.image = img
			a.restarts = append(a.restarts, a.image)
		} else {
			a.restarts = append(a.restarts, "in place "+a.image) // a restart without an image keeps it
		}
		restarted = true
		ev.Result = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Restart{Restart: &flotillav1.RestartResult{
			Container: k.Restart.GetContainer(), Image: a.image, PreviousImage: prev}}}
	case *flotillav1.CommandSpec_Drain:
		a.lbLog = append(a.lbLog, "drain "+k.Drain.GetServer())
		ev.Result = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Drain{Drain: &flotillav1.DrainResult{
			Upstream: k.Drain.GetUpstream(), Server: k.Drain.GetServer(), Changed: true}}}
	case *flotillav1.CommandSpec_Undrain:
		a.lbLog = append(a.lbLog, "undrain "+k.Undrain.GetServer())
		ev.Result = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Drain{Drain: &flotillav1.DrainResult{
			Upstream: k.Undrain.GetUpstream(), Server: k.Undrain.GetServer(), Changed: true}}}
	case *flotillav1.CommandSpec_StartCandidate, *flotillav1.CommandSpec_SwapServers, *flotillav1.CommandSpec_BlueGreen:
		a.executeSideBySide(cmd.GetSpec(), ev)
	default:
		ev.State, ev.Message = flotillav1.CommandState_COMMAND_STATE_REJECTED, "unknown command kind"
	}
	a.journal[id] = ev
	freeze := restarted && a.freezeOn == "after-restart"
	a.mu.Unlock()
	a.sendEvent(ev)
	if restarted {
		a.heartbeat() // report the new container's health at once
	}
	if freeze {
		a.set(func(a *fakeAgent) { a.frozen = true })
	}
}

// executedIDs returns the command IDs the agent executed, sorted, and
// fails if one was executed twice.
func (a *fakeAgent) executedIDs(t testing.TB) []string {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for id, n := range a.executed {
		if n != 1 {
			t.Errorf("%s executed %s %d times", a.id, id, n)
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (a *fakeAgent) snapshot() (restarts, lbLog []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.restarts...), append([]string(nil), a.lbLog...)
}

// dbDir is a fresh directory for a test's store: on /dev/shm when the
// machine has it, since a crash matrix of dozens of control planes would
// otherwise spend its time in fsync; the store is the same real SQLite.
// FLOTILLA_TEST_STORE_ON_DISK=1 keeps it on disk (t.TempDir).
func dbDir(t testing.TB) string {
	if os.Getenv("FLOTILLA_TEST_STORE_ON_DISK") == "1" {
		return t.TempDir()
	}
	if info, err := os.Stat("/dev/shm"); err == nil && info.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "flotilla-rollout-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// metric returns a metric's value (a histogram's sample count) with the
// given label, or without labels when label is empty.
func (c *cluster) metric(name, label, value string) float64 {
	c.t.Helper()
	mfs, err := c.current().Server.Metrics().Gather()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			default:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// executeSideBySide plays a blue-green command on the fake host's model
// (a.mu held): a candidate fails when its image is unhealthy here.
func (a *fakeAgent) executeSideBySide(spec *flotillav1.CommandSpec, ev *flotillav1.CommandEvent) {
	fail := func(msg string) { ev.State, ev.Message = flotillav1.CommandState_COMMAND_STATE_FAILED, msg }
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_StartCandidate:
		c := k.StartCandidate
		a.candidates++
		switch {
		case c.GetPort() != a.port:
			fail(fmt.Sprintf("container publishes no host port %d (test)", c.GetPort()))
		case a.unhealthy[c.GetImage()]:
			fail("the candidate was not healthy within healthy_deadline; it was removed (test)")
		default:
			a.nextImage, a.nextPort = c.GetImage(), c.GetCandidatePort()
			ev.Result = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Candidate{Candidate: &flotillav1.CandidateResult{
				Container: c.GetContainer(), Image: c.GetImage(), PreviousImage: a.image}}}
		}
	case *flotillav1.CommandSpec_SwapServers:
		a.swapCounts++
		var changes []string
		for _, s := range k.SwapServers.GetSwaps() {
			i := slices.Index(a.servers, s.GetFrom())
			switch {
			case i >= 0:
				a.servers[i] = s.GetTo()
				changes = append(changes, s.GetFrom()+">"+s.GetTo())
			case !slices.Contains(a.servers, s.GetTo()):
				fail("server " + s.GetFrom() + " is not in the upstream (test)")
				return
			}
		}
		a.lbLog = append(a.lbLog, "swap "+strings.Join(changes, ","))
		ev.Result = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Swap{Swap: &flotillav1.SwapResult{Upstream: k.SwapServers.GetUpstream(), Swapped: int32(len(changes))}}}
	case *flotillav1.CommandSpec_BlueGreen:
		a.blueGreenAction(k.BlueGreen.GetAction())
	}
}

func (a *fakeAgent) blueGreenAction(action flotillav1.BlueGreenAction) {
	switch action {
	case flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_PROMOTE, flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_REPLACE:
		if a.nextImage == "" {
			return
		}
		a.prevImage, a.prevPort = a.image, a.port
		a.image, a.port, a.nextImage = a.nextImage, a.nextPort, ""
		if action == flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_REPLACE {
			a.prevImage = ""
		}
	case flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_REVERT:
		if a.prevImage != "" {
			a.image, a.port, a.prevImage = a.prevImage, a.prevPort, ""
		}
		a.nextImage = ""
	case flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_RETIRE:
		a.prevImage = ""
	case flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_DISCARD:
		a.nextImage = ""
	}
}

// model returns the fake host's blue-green state.
func (a *fakeAgent) model() (image string, port int32, next, prev string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.image, a.port, a.nextImage, a.prevImage
}

// upstreamServers returns the load balancer's servers.
func (a *fakeAgent) upstreamServers() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.servers)
}

// dropStream ends the agent's stream as a replica shedding it would, keeps
// it away until comeBack is called, and waits until the control plane
// shows it disconnected.
func (c *cluster) dropStream(a *fakeAgent) (comeBack func()) {
	c.t.Helper()
	var end context.CancelFunc
	a.set(func(a *fakeAgent) { a.frozen, end = true, a.endSession })
	if end != nil {
		end()
	}
	eventually(c.t, a.id+" to be disconnected", func() bool {
		got, ok := c.current().Server.Registry().Get(a.id)
		return ok && got.Record.State == store.AgentDisconnected
	})
	return func() { a.set(func(a *fakeAgent) { a.frozen = false }) }
}
