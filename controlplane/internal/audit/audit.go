package audit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/auth"
	cplog "flotilla.dev/controlplane/internal/logging"
	"flotilla.dev/controlplane/internal/metrics"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
)

// Anonymous is the principal of a call made without credentials.
const Anonymous = "anonymous"

// maxMessage bounds the status message kept per event.
const maxMessage = 1024

// Config configures a Recorder.
type Config struct {
	Store  store.AuditStore
	Logger *zap.Logger
	// Registerer receives the recorder's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// WriteTimeout bounds one write to the store (default 5s).
	WriteTimeout time.Duration
}

// Recorder writes audit events.
type Recorder struct {
	cfg      Config
	log      *zap.Logger
	failures *prometheus.CounterVec
}

// New validates cfg and returns a Recorder.
func New(cfg Config) (*Recorder, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: Store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	r := &Recorder{cfg: cfg, log: cfg.Logger,
		failures: metrics.CounterVec("flotilla_audit_write_failures_total",
			"Audit events that could not be written to the store, by stage: before (the call was refused) or after (the outcome is missing).", "stage"),
	}
	for _, s := range []string{stageBefore, stageAfter} {
		r.failures.WithLabelValues(s)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(r.failures); err != nil {
			return nil, err
		}
	}
	return r, nil
}

const (
	stageBefore = "before"
	stageAfter  = "after"
)

// mutatingServices are the services whose methods are audited unless their
// name says they only read (Get, List, Watch).
var mutatingServices = map[string]bool{
	flotillav1.FleetService_ServiceDesc.ServiceName:        true,
	flotillav1.RolloutService_ServiceDesc.ServiceName:      true,
	flotillav1.AdminService_ServiceDesc.ServiceName:        true,
	flotillav1.BackupService_ServiceDesc.ServiceName:       true,
	flotillav1.NotificationService_ServiceDesc.ServiceName: true,
}

// Audited reports whether calls to the full method name are recorded: every
// method of FleetService, RolloutService, AdminService, BackupService and
// NotificationService except those named Get*, List* or Watch*, and
// AgentService's Register and RenewCertificate, which issue credentials. An agent's stream (Connect) is
// not: what it changes is recorded by the subsystems it feeds.
func Audited(method string) bool {
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return false
	}
	if svc == flotillav1.AgentService_ServiceDesc.ServiceName {
		return name == "Register" || name == "RenewCertificate"
	}
	if !mutatingServices[svc] {
		return false
	}
	for _, p := range []string{"Get", "List", "Watch"} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}

// call is one audited call in flight.
type call struct {
	started time.Time
	method  string
	peer    string
	request string
	caller  func() (auth.Principal, bool)
	// requestID is the call's x-request-id. The audit row has no column
	// for it, so only the audit log line carries it.
	requestID string

	mu        sync.Mutex
	id        int64 // the row the gate wrote; 0 when none
	principal string
	role      string
}

type callKey struct{}

// UnaryServerInterceptor records audited calls. Place it before the
// authentication interceptor, so that refused calls are recorded too.
func (r *Recorder) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !Audited(info.FullMethod) {
			return handler(ctx, req)
		}
		c := &call{started: r.cfg.Now(), method: info.FullMethod, peer: peerAddress(ctx), request: Redact(req)}
		c.requestID, _ = cplog.RequestIDFrom(ctx)
		ctx, c.caller = auth.TrackCaller(ctx)
		ctx = context.WithValue(ctx, callKey{}, c)
		resp, err := handler(ctx, req)
		r.finish(ctx, c, err)
		return resp, err
	}
}

// UnaryGateInterceptor writes the audit row of an authorized audited call
// before the call runs, and refuses the call with Unavailable when the row
// cannot be written. Place it after the authentication interceptor and
// after UnaryServerInterceptor; without the latter every audited call is
// refused, so a wiring mistake cannot silently turn auditing off.
func (r *Recorder) UnaryGateInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !Audited(info.FullMethod) {
			return handler(ctx, req)
		}
		c, ok := ctx.Value(callKey{}).(*call)
		if !ok {
			r.log.Error("audited call without the audit recorder; refusing it (server wiring error)", zap.String("method", info.FullMethod))
			return nil, status.Error(codes.Internal, "the audit trail is not set up for this call; refusing it")
		}
		principal, role := Anonymous, ""
		if p, ok := auth.PrincipalFrom(ctx); ok {
			principal, role = p.String(), roleName(p)
		}
		c.mu.Lock()
		c.principal, c.role = principal, role
		c.mu.Unlock()
		wctx, cancel := r.writeContext(ctx)
		defer cancel()
		id, err := r.cfg.Store.AppendAuditEvent(wctx, c.event(""))
		if err != nil {
			r.failures.WithLabelValues(stageBefore).Inc()
			r.writeFailed(err, "AUDIT WRITE FAILED: refusing a mutating call that could not be recorded",
				logging.Principal(principal), zap.String("method", c.method), zap.String("peer", c.peer),
				logging.RequestID(c.requestID))
			return nil, status.Error(codes.Unavailable, "the audit trail cannot be written, so changes are refused until it can; retry later (the control plane logged the cause)")
		}
		c.mu.Lock()
		c.id = id
		c.mu.Unlock()
		return handler(ctx, req)
	}
}

// writeFailed logs an audit write that failed. While the database is away
// every call fails the same way: a warning without a stack trace says so
// (the store's own health and flotilla_audit_write_failures_total show the
// outage); any other failure is an error with its stack.
func (r *Recorder) writeFailed(err error, msg string, fields ...zap.Field) {
	fields = append(fields, zap.Error(err))
	if errors.Is(err, store.ErrUnavailable) {
		r.log.Warn(msg+" (the database is unavailable)", fields...)
		return
	}
	r.log.Error(msg, fields...)
}

// finish records the outcome: it completes the gate's row, or writes a
// whole row for a call refused before the gate (by authentication).
func (r *Recorder) finish(ctx context.Context, c *call, callErr error) {
	st := status.Convert(callErr)
	code, msg := st.Code().String(), truncate(st.Message(), maxMessage)
	duration := r.cfg.Now().Sub(c.started)
	c.mu.Lock()
	id, principal, role := c.id, c.principal, c.role
	c.mu.Unlock()
	if id == 0 {
		principal, role = Anonymous, ""
		if p, ok := c.caller(); ok {
			principal, role = p.String(), roleName(p)
		}
	}
	wctx, cancel := r.writeContext(ctx)
	defer cancel()
	var err error
	if id != 0 {
		err = r.cfg.Store.FinishAuditEvent(wctx, id, code, msg, duration)
	} else {
		ev := c.event("")
		ev.Principal, ev.Role, ev.Code, ev.Message, ev.Duration = principal, role, code, msg, duration
		id, err = r.cfg.Store.AppendAuditEvent(wctx, ev)
	}
	fields := []zap.Field{
		zap.Int64("audit_id", id), logging.Principal(principal), zap.String("role", role),
		zap.String("method", c.method), zap.String("peer", c.peer), zap.String("code", code),
		zap.String("message", msg), zap.Duration("duration", duration), zap.String("request", c.request),
		logging.RequestID(c.requestID),
	}
	if err != nil {
		r.failures.WithLabelValues(stageAfter).Inc()
		r.writeFailed(err, "AUDIT WRITE FAILED: the outcome of a call is missing from the audit trail", fields...)
		return
	}
	lvl := zapcore.InfoLevel
	if st.Code() == codes.Unauthenticated || st.Code() == codes.PermissionDenied {
		lvl = zapcore.WarnLevel
	}
	r.log.Log(lvl, "audit", fields...)
}

// event is the call's row, with the principal the gate recorded.
func (c *call) event(code string) store.AuditEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return store.AuditEvent{
		At: c.started, Principal: c.principal, Role: c.role, Method: c.method,
		Request: c.request, Peer: c.peer, Code: code, RequestID: c.requestID,
	}
}

// writeContext bounds an audit write. It survives the call's cancellation:
// a client that hangs up must not erase its trace.
func (r *Recorder) writeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.cfg.WriteTimeout)
}

func roleName(p auth.Principal) string {
	if p.Kind == "agent" {
		return ""
	}
	return p.Role.String()
}

func peerAddress(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// RecordSystem writes the audit entry of an action the control plane took
// on its own (no call): principal names the subsystem
// ("system:remediation"), action what it did ("remediation.restart"),
// request the action's parameters (as JSON, secrets redacted) and message
// the outcome. A failed write is logged and counted, never returned: the
// action happened.
func (r *Recorder) RecordSystem(ctx context.Context, principal, action string, request any, message string) {
	wctx, cancel := r.writeContext(ctx)
	defer cancel()
	ev := store.AuditEvent{
		At: r.cfg.Now(), Principal: principal, Role: "system", Method: action, Request: Redact(request),
		Code: "OK", Message: truncate(message, maxMessage),
	}
	id, err := r.cfg.Store.AppendAuditEvent(wctx, ev)
	fields := []zap.Field{zap.Int64("audit_id", id), logging.Principal(principal), zap.String("method", action),
		zap.String("request", ev.Request), zap.String("message", ev.Message)}
	if err != nil {
		r.failures.WithLabelValues(stageAfter).Inc()
		r.writeFailed(err, "AUDIT WRITE FAILED: an automatic action is missing from the audit trail", fields...)
		return
	}
	r.log.Info("audit", fields...)
}
