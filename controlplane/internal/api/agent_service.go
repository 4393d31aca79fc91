package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/pki"
	"flotilla.dev/controlplane/internal/ratelimit"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// AgentServiceStore is what the agent service keeps: registrations and the
// certificates it renews.
type AgentServiceStore interface {
	store.AgentStore
	store.IdentityStore
}

// AgentServiceConfig configures the agent-facing service.
type AgentServiceConfig struct {
	Store    AgentServiceStore
	Registry AgentRegistry
	CA       CertificateAuthority
	Logger   *zap.Logger
	Now      func() time.Time
	// Version is the control plane's build version, sent in the welcome.
	Version string
	// CertValidity is the lifetime of agent certificates.
	CertValidity time.Duration
	// HelloTimeout bounds the wait for a new stream's hello (default 10s).
	HelloTimeout time.Duration
	// Metrics counts registrations and streams; nil disables.
	Metrics *Metrics
	// Commands receives command events and is told when an agent connects,
	// so it can (re)send that agent's commands.
	Commands CommandEvents
	// RegisterLimiter bounds Register calls per source address; nil means
	// the default of 5 a minute with bursts of 10.
	RegisterLimiter *ratelimit.Limiter
}

// AgentService implements flotilla.v1.AgentService.
type AgentService struct {
	flotillav1.UnimplementedAgentServiceServer
	cfg AgentServiceConfig
	log *zap.Logger
}

// NewAgentService validates cfg and returns the service.
func NewAgentService(cfg AgentServiceConfig) (*AgentService, error) {
	if cfg.Store == nil || cfg.Registry == nil || cfg.CA == nil {
		return nil, errors.New("api: agent service needs Store, Registry and CA")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Commands == nil {
		return nil, errors.New("api: agent service needs the command dispatcher")
	}
	if cfg.CertValidity <= 0 {
		return nil, errors.New("api: agent certificate validity must be positive")
	}
	if cfg.HelloTimeout == 0 {
		cfg.HelloTimeout = 10 * time.Second
	}
	if cfg.RegisterLimiter == nil {
		l, err := ratelimit.New(ratelimit.Config{Rate: 5, Per: time.Minute, Burst: 10, Now: cfg.Now})
		if err != nil {
			return nil, err
		}
		cfg.RegisterLimiter = l
	}
	return &AgentService{cfg: cfg, log: cfg.Logger}, nil
}

// Register implements AgentService.Register.
func (s *AgentService) Register(ctx context.Context, req *flotillav1.RegisterRequest) (*flotillav1.RegisterResponse, error) {
	// Before anything else: guessing join tokens and making the CA sign
	// must cost an attacker time.
	if err := s.admitRegistration(ctx); err != nil {
		return nil, err
	}
	if err := validateRegister(req); err != nil {
		return nil, err
	}
	csr, err := pki.ParseCSR(req.GetCsr())
	if err != nil {
		return nil, csrInvalid(err)
	}
	source := peerAddress(ctx)
	now := s.cfg.Now()
	tokenHash := auth.HashSecret(req.GetJoinToken())
	keySum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	keySHA256 := hex.EncodeToString(keySum[:])
	var certPEM []byte
	build := s.agentBuilder(req, keySHA256, source, now, &certPEM)
	agent, err := s.cfg.Store.RegisterAgent(ctx, tokenHash, now, build)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrJoinTokenInvalid) {
		// An agent retries Register with the same key when an attempt's
		// answer does not reach it. If that attempt registered it, the
		// store refuses a second agent with the key (conflict), or the
		// attempt took the token's last use (invalid): answer with the
		// agent it registered. Looked up only then, so that a fleet
		// registering at once pays no extra read.
		if resp, done, err := s.registeredBefore(ctx, req, tokenHash, keySHA256, now, source); done {
			return resp, err
		}
	}
	if errors.Is(err, store.ErrConflict) {
		// Two hosts drew the same random suffix: draw again once.
		agent, err = s.cfg.Store.RegisterAgent(ctx, tokenHash, now, build)
	}
	if err != nil {
		return nil, s.registrationFailed(req, source, err)
	}
	s.cfg.Registry.Add(agent)
	s.cfg.Metrics.registration("ok")
	s.log.Info("agent registered", logging.AgentID(agent.ID), logging.Hostname(agent.Hostname),
		zap.String("peer", source), zap.String("join_token", agent.JoinTokenID), zap.Any("labels", agent.Labels),
		zap.Time("cert_not_after", agent.CertNotAfter))
	return &flotillav1.RegisterResponse{
		AgentId:        agent.ID,
		CertificatePem: certPEM,
		CaBundlePem:    s.cfg.CA.CertificatePEM(),
		Labels:         agent.Labels,
	}, nil
}

// agentBuilder returns the function the store calls, inside the
// transaction that takes a use of the join token, to make the new agent:
// a fresh ID, a certificate the CA signs for the request's key (its PEM
// left in *certPEM for the answer), and the token's labels pinned.
func (s *AgentService) agentBuilder(req *flotillav1.RegisterRequest, keySHA256, source string, now time.Time,
	certPEM *[]byte) func(store.JoinToken) (store.Agent, error) {
	return func(tok store.JoinToken) (store.Agent, error) {
		id, err := newAgentID(req.GetHostname())
		if err != nil {
			return store.Agent{}, err
		}
		cert, pemBytes, err := s.cfg.CA.SignAgent(req.GetCsr(), id, s.cfg.CertValidity)
		if err != nil {
			return store.Agent{}, err
		}
		*certPEM = pemBytes
		return store.Agent{
			ID:              id,
			Hostname:        req.GetHostname(),
			Labels:          fleet.MergeLabels(req.GetLabels(), tok.Labels),
			PinnedLabels:    tok.Labels,
			State:           store.AgentDisconnected,
			StateReason:     "registered; waiting for the first stream",
			StateChangedAt:  now,
			RegisteredAt:    now,
			PeerAddress:     source,
			CertSerial:      pki.SerialHex(cert),
			CertNotAfter:    cert.NotAfter,
			JoinTokenID:     tok.ID,
			PublicKeySHA256: keySHA256,
		}, nil
	}
}

// registrationFailed counts, logs and answers a registration the store
// refused (Unauthenticated: the join token) or could not store
// (Unavailable).
func (s *AgentService) registrationFailed(req *flotillav1.RegisterRequest, source string, err error) error {
	if errors.Is(err, store.ErrJoinTokenInvalid) {
		s.cfg.Metrics.registration("refused")
		s.log.Warn("agent registration refused: invalid join token",
			logging.Hostname(req.GetHostname()), zap.String("peer", source))
		return status.Error(codes.Unauthenticated, "join token is invalid, expired, revoked or used up; ask an admin for a new one (FleetService.CreateJoinToken)")
	}
	s.cfg.Metrics.registration("error")
	s.log.Error("agent registration failed", logging.Hostname(req.GetHostname()), zap.Error(err))
	return status.Error(codes.Unavailable, "registration could not be stored; retry")
}

// registeredBefore answers a Register whose key already registered an agent
// with the same join token: a retry after an answer that was lost. It
// signs a new certificate for that agent (the request proves possession of
// the key) and reports done; when there is no such agent it reports not
// done, and the request registers normally.
func (s *AgentService) registeredBefore(ctx context.Context, req *flotillav1.RegisterRequest, tokenHash []byte, keySHA256 string,
	now time.Time, source string) (resp *flotillav1.RegisterResponse, done bool, err error) {
	agent, err := s.cfg.Store.RegisteredWithKey(ctx, tokenHash, keySHA256, now)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrJoinTokenInvalid):
		return nil, false, nil // the normal path registers or refuses it
	case err != nil:
		s.cfg.Metrics.registration("error")
		s.log.Error("agent registration failed: looking up an earlier registration", logging.Hostname(req.GetHostname()), zap.Error(err))
		return nil, true, status.Error(codes.Unavailable, "registration could not be checked; retry")
	}
	cert, certPEM, err := s.cfg.CA.SignAgent(req.GetCsr(), agent.ID, s.cfg.CertValidity)
	if err != nil {
		return nil, true, csrError(s.log, "signing the agent's certificate", err)
	}
	serial := pki.SerialHex(cert)
	err = s.cfg.Store.UpdateAgentCertificate(ctx, agent.ID, serial, cert.NotAfter)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Deregistered since the look-up: register it as a new agent.
		return nil, false, nil
	case err != nil:
		s.cfg.Metrics.registration("error")
		s.log.Error("agent registration failed: recording the certificate", logging.AgentID(agent.ID), zap.Error(err))
		return nil, true, status.Error(codes.Unavailable, "registration could not be stored; retry")
	}
	agent.CertSerial, agent.CertNotAfter = serial, cert.NotAfter
	if _, known := s.cfg.Registry.Get(agent.ID); known {
		s.cfg.Registry.SetCertificate(agent.ID, serial, cert.NotAfter)
	} else {
		s.cfg.Registry.Add(agent)
	}
	s.cfg.Metrics.registration("ok")
	s.log.Info("agent registered again with the same key (an earlier answer was lost): same agent, new certificate",
		logging.AgentID(agent.ID), logging.Hostname(agent.Hostname), zap.String("peer", source),
		zap.String("join_token", agent.JoinTokenID), zap.String("serial", serial))
	return &flotillav1.RegisterResponse{
		AgentId:        agent.ID,
		CertificatePem: certPEM,
		CaBundlePem:    s.cfg.CA.CertificatePEM(),
		Labels:         agent.Labels,
	}, true, nil
}

func validateRegister(req *flotillav1.RegisterRequest) error {
	switch tok := req.GetJoinToken(); {
	case tok == "":
		return invalid("join_token", "required")
	case len(tok) > maxTokenLength:
		return invalid("join_token", "longer than %d bytes", maxTokenLength)
	}
	switch csr := req.GetCsr(); {
	case len(csr) == 0:
		return invalid("csr", "required: a PKCS#10 certificate signing request for the agent's key")
	case len(csr) > maxCSRBytes:
		return invalid("csr", "%d bytes, at most %d allowed", len(csr), maxCSRBytes)
	}
	if err := validateHostname("hostname", req.GetHostname(), true); err != nil {
		return err
	}
	return validateLabels("labels", req.GetLabels())
}

var idUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// newAgentID derives a readable, unique ID from the hostname:
// "web-1.example.com" → "web-1-k3m9q2".
func newAgentID(hostname string) (string, error) {
	base := strings.ToLower(hostname)
	if i := strings.IndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	base = strings.Trim(idUnsafe.ReplaceAllString(base, "-"), "-")
	if len(base) > 40 {
		base = strings.TrimRight(base[:40], "-")
	}
	if base == "" {
		base = "agent"
	}
	suffix, err := auth.NewID("")
	if err != nil {
		return "", err
	}
	return base + "-" + suffix[:6], nil
}

func peerAddress(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// Connect implements AgentService.Connect: the agent's long-lived stream.
func (s *AgentService) Connect(stream grpc.BidiStreamingServer[flotillav1.ConnectRequest, flotillav1.ConnectResponse]) error {
	ctx := stream.Context()
	p, ok := auth.PrincipalFrom(ctx)
	if !ok || p.Kind != "agent" {
		return status.Error(codes.Unauthenticated, "Connect needs the agent's client certificate")
	}
	if _, known := s.cfg.Registry.Get(p.ID); !known {
		return status.Errorf(codes.Unauthenticated, "agent %s is not registered with this control plane; remove the agent's state directory and register again with a join token", p.ID)
	}
	hello, err := s.awaitHello(stream, p.ID)
	if err != nil {
		return err
	}
	addr := peerAddress(ctx)
	sess, err := s.cfg.Registry.Attach(p.ID, hello, addr)
	if err != nil {
		return status.Errorf(codes.Unauthenticated, "agent %s: %v", p.ID, err)
	}
	log := s.log.With(logging.AgentID(p.ID), zap.String("peer", addr))
	log.Info("agent stream opened", zap.String("version", hello.GetVersion()), logging.Hostname(hello.GetHostname()))
	s.cfg.Metrics.streamOpened()
	defer s.cfg.Metrics.streamClosed()

	welcome := &flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Welcome{Welcome: &flotillav1.Welcome{
		AgentId: p.ID, ServerVersion: s.cfg.Version, ServerTime: timestamppb.New(s.cfg.Now()),
	}}}
	if err := stream.Send(welcome); err != nil {
		s.cfg.Registry.Detach(sess, "sending the welcome failed: "+err.Error())
		return err
	}

	s.cfg.Commands.OnConnect(p.ID)

	recvErr := make(chan error, 1)
	go func() { recvErr <- s.receive(stream, sess) }()
	err = s.sendLoop(stream, sess, recvErr)
	reason := streamEndReason(err)
	s.cfg.Registry.Detach(sess, reason)
	log.Info("agent stream closed", zap.String("reason", reason))
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return nil
	case fleet.IsReplaced(err):
		return status.Error(codes.Aborted, "a newer stream from this agent replaced this one")
	case errors.Is(err, fleet.ErrLost), errors.Is(err, fleet.ErrShuttingDown), errors.Is(err, fleet.ErrRebalanced):
		return status.Error(codes.Unavailable, err.Error())
	case errors.As(err, new(*fleet.DeregisteredError)):
		return status.Error(codes.Unauthenticated, err.Error())
	default:
		if _, ok := status.FromError(err); ok {
			return err
		}
		return status.Error(codes.Unavailable, err.Error())
	}
}

func streamEndReason(err error) string {
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return "agent closed the stream"
	case status.Code(err) == codes.Canceled:
		return "stream cancelled (agent went away or control plane stopping)"
	default:
		return err.Error()
	}
}

// awaitHello waits, bounded by HelloTimeout, for the stream's first message,
// which must be a hello consistent with the certificate.
func (s *AgentService) awaitHello(stream grpc.BidiStreamingServer[flotillav1.ConnectRequest, flotillav1.ConnectResponse], agentID string) (*flotillav1.Hello, error) {
	type result struct {
		msg *flotillav1.ConnectRequest
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := stream.Recv()
		ch <- result{m, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-time.After(s.cfg.HelloTimeout):
		// Returning ends the stream, which also ends the pending Recv.
		return nil, status.Errorf(codes.DeadlineExceeded, "no hello within %s", s.cfg.HelloTimeout)
	}
	if r.err != nil {
		return nil, r.err
	}
	hello := r.msg.GetHello()
	if hello == nil {
		return nil, invalid("body", "the first message of a stream must be a hello")
	}
	if claimed := hello.GetAgentId(); claimed != "" && claimed != agentID {
		s.log.Warn("agent claimed another identity; stream refused",
			zap.String("certificate_agent", agentID), zap.String("claimed_agent", claimed))
		return nil, status.Errorf(codes.PermissionDenied, "hello.agent_id %q does not match the client certificate (agent %s)", claimed, agentID)
	}
	if err := validateHello(hello); err != nil {
		return nil, err
	}
	return hello, nil
}

func validateHello(h *flotillav1.Hello) error {
	if err := validateShort("hello.version", h.GetVersion(), maxShortString); err != nil {
		return err
	}
	if err := validateHostname("hello.hostname", h.GetHostname(), false); err != nil {
		return err
	}
	if err := validateLabels("hello.labels", h.GetLabels()); err != nil {
		return err
	}
	if n := len(h.GetCapabilities()); n > maxCapabilities {
		return invalid("hello.capabilities", "%d entries, at most %d allowed", n, maxCapabilities)
	}
	for i, c := range h.GetCapabilities() {
		if err := validateShort(fmt.Sprintf("hello.capabilities[%d]", i), c, 64); err != nil {
			return err
		}
	}
	return validateContainers("hello.containers", h.GetContainers())
}

func validateHeartbeat(hb *flotillav1.Heartbeat) error {
	if n := len(hb.GetHost().GetDisks()); n > maxDisks {
		return invalid("heartbeat.host.disks", "%d entries, at most %d allowed", n, maxDisks)
	}
	if n := len(hb.GetDatabases()); n > maxDatabases {
		return invalid("heartbeat.databases", "%d entries, at most %d allowed", n, maxDatabases)
	}
	for i, db := range hb.GetDatabases() {
		if err := validateWALArchiver(fmt.Sprintf("heartbeat.databases[%d].wal_archiver", i), db.GetWalArchiver()); err != nil {
			return err
		}
	}
	if app := hb.GetApp(); app != nil {
		// An array, not a map: this runs for every heartbeat.
		fields := [...]struct{ name, value string }{{"url", app.GetUrl()}, {"status", app.GetStatus()}, {"timestamp", app.GetTimestamp()},
			{"database", app.GetDatabase()}, {"cache", app.GetCache()}, {"error", app.GetError()}}
		for _, f := range fields {
			if len(f.value) > 2048 {
				return invalid("heartbeat.app."+f.name, "%d bytes, at most 2048 allowed", len(f.value))
			}
		}
	}
	return validateContainers("heartbeat.containers", hb.GetContainers())
}

// The bounds of a heartbeat's WAL archive continuity: timelines with
// archived segments, and the missing segments listed per timeline (the
// agent lists 10).
const (
	maxArchiveTimelines = 1000
	maxMissingListed    = 100
)

// validateWALArchiver bounds the archive continuity a heartbeat carries.
func validateWALArchiver(field string, w *flotillav1.WalArchiverStats) error {
	if n := len(w.GetArchiveTimelines()); n > maxArchiveTimelines {
		return invalid(field+".archive_timelines", "%d entries, at most %d allowed", n, maxArchiveTimelines)
	}
	if n := len(w.GetArchiveCheckError()); n > 2048 {
		return invalid(field+".archive_check_error", "%d bytes, at most 2048 allowed", n)
	}
	for i, tl := range w.GetArchiveTimelines() {
		if n := len(tl.GetMissing()); n > maxMissingListed {
			return invalid(fmt.Sprintf("%s.archive_timelines[%d].missing", field, i), "%d entries, at most %d allowed", n, maxMissingListed)
		}
	}
	return nil
}

func validateContainers(field string, cs []*flotillav1.ManagedContainer) error {
	if len(cs) > maxContainers {
		return invalid(field, "%d entries, at most %d allowed", len(cs), maxContainers)
	}
	// Every heartbeat passes here: check the lengths first and build a
	// field name only for an error.
	for i, c := range cs {
		fields := [...]struct{ name, value string }{{"name", c.GetName()}, {"container_id", c.GetContainerId()},
			{"image", c.GetImage()}, {"image_id", c.GetImageId()}, {"state", c.GetState()}}
		for _, f := range fields {
			if validateShort("", f.value, maxShortString) == nil {
				continue
			}
			return validateShort(fmt.Sprintf("%s[%d].%s", field, i, f.name), f.value, maxShortString)
		}
	}
	return nil
}

// receive handles the agent's messages after the hello until the stream ends.
func (s *AgentService) receive(stream grpc.BidiStreamingServer[flotillav1.ConnectRequest, flotillav1.ConnectResponse], sess *fleet.Session) error {
	for {
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		switch body := msg.GetBody().(type) {
		case *flotillav1.ConnectRequest_Heartbeat:
			if err := validateHeartbeat(body.Heartbeat); err != nil {
				return err
			}
			if err := s.cfg.Registry.Heartbeat(sess, body.Heartbeat); err != nil {
				return err
			}
		case *flotillav1.ConnectRequest_CommandEvent:
			s.cfg.Registry.Touch(sess)
			if err := s.commandEvent(stream.Context(), sess, "command_event", body.CommandEvent); err != nil {
				return err
			}
		case *flotillav1.ConnectRequest_JournalReport:
			s.cfg.Registry.Touch(sess)
			if err := validateJournalReport(body.JournalReport); err != nil {
				return err
			}
			for i, ev := range body.JournalReport.GetEntries() {
				if err := s.commandEvent(stream.Context(), sess, fmt.Sprintf("journal_report.entries[%d]", i), ev); err != nil {
					return err
				}
			}
		case *flotillav1.ConnectRequest_Hello:
			return invalid("body", "hello may only be the first message of a stream")
		default:
			return invalid("body", "empty or unknown message")
		}
	}
}

// validateCommandEvent checks an event an agent reports, named field.
func validateCommandEvent(field string, ev *flotillav1.CommandEvent) error {
	if ev.GetCommandId() == "" || len(ev.GetCommandId()) > maxShortString {
		return invalid(field+".command_id", "required, at most %d bytes", maxShortString)
	}
	return validateResultLists(field+".result", ev.GetResult())
}

// maxResultEntries bounds the lists of a command result: the backups a
// prune kept or deleted, the tables a drill checked.
const maxResultEntries = 100000

// validateResultLists bounds the lists a command result carries.
func validateResultLists(field string, r *flotillav1.CommandResult) error {
	for _, l := range []struct {
		name string
		n    int
	}{
		{"prune.kept", len(r.GetPrune().GetKept())},
		{"prune.deleted", len(r.GetPrune().GetDeleted())},
		{"drill.tables", len(r.GetDrill().GetTables())},
		{"restore.timeline_history", len(r.GetRestore().GetTimelineHistory())},
	} {
		if l.n > maxResultEntries {
			return invalid(field+"."+l.name, "%d entries, at most %d allowed", l.n, maxResultEntries)
		}
	}
	return nil
}

// validateJournalReport checks a journal report and each of its events
// before any is applied.
func validateJournalReport(r *flotillav1.JournalReport) error {
	if n := len(r.GetEntries()); n > maxJournalEntries {
		return invalid("journal_report.entries", "%d entries, at most %d allowed", n, maxJournalEntries)
	}
	for i, ev := range r.GetEntries() {
		if err := validateCommandEvent(fmt.Sprintf("journal_report.entries[%d]", i), ev); err != nil {
			return err
		}
	}
	return nil
}

// maxJournalEntries bounds one journal report.
const maxJournalEntries = 100000

// commandEvent validates and applies one event, named field in errors (a
// command_event, or an entry of a journal_report). An event about another
// agent's command is logged and dropped (never trusted); a store failure
// ends the stream so the agent reconnects and reports its journal again.
func (s *AgentService) commandEvent(ctx context.Context, sess *fleet.Session, field string, ev *flotillav1.CommandEvent) error {
	if err := validateCommandEvent(field, ev); err != nil {
		return err
	}
	if len(ev.GetMessage()) > 16<<10 {
		ev.Message = ev.GetMessage()[:16<<10] + "…"
	}
	err := s.cfg.Commands.OnEvent(ctx, sess.AgentID(), ev)
	if errors.Is(err, commands.ErrNotOwner) {
		return nil
	}
	if err != nil {
		return status.Errorf(codes.Unavailable, "command event for %s not recorded: %v", ev.GetCommandId(), err)
	}
	return nil
}

// sendLoop sends the session's queued messages until the receive side
// ends or the registry closes the session.
func (s *AgentService) sendLoop(stream grpc.BidiStreamingServer[flotillav1.ConnectRequest, flotillav1.ConnectResponse], sess *fleet.Session, recvErr <-chan error) error {
	for {
		select {
		case err := <-recvErr:
			return err
		case <-sess.Done():
			return sess.Err()
		case <-sess.Ready():
			for _, msg := range sess.Take() {
				if err := stream.Send(msg); err != nil {
					return err
				}
			}
		}
	}
}
