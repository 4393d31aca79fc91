package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	v1reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	cplog "flotilla.dev/controlplane/internal/logging"
	"flotilla.dev/controlplane/internal/server/servertest"
)

// callLines are the lines logged about calls to service, by message.
func callLines(logs *observer.ObservedLogs, msg, service string) []observer.LoggedEntry {
	return logs.Filter(func(e observer.LoggedEntry) bool {
		if e.Message != msg {
			return false
		}
		if service == "" {
			return true
		}
		s, _ := e.ContextMap()["grpc.service"].(string)
		return s == service
	}).All()
}

// TestRequestID checks that every call gets a request ID: the one the
// client sent when it is valid, else a new one; that the response header
// returns it; and that the call's log line and its audit line carry it,
// for allowed and refused calls alike.
func TestRequestID(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := start(t, servertest.WithLogger(zap.New(core)))
	fc := h.fleet()
	tests := []struct {
		name   string
		sent   []string // x-request-id values the client sends
		token  string
		kept   bool // the response returns sent[0]
		failed bool
	}{
		{"none sent", nil, h.admin, false, false},
		{"valid kept", []string{"req-7f3a.2"}, h.admin, true, false},
		{"too long replaced", []string{strings.Repeat("r", cplog.MaxRequestIDLen+1)}, h.admin, false, false},
		{"space replaced", []string{"two words"}, h.admin, false, false},
		{"two replaced", []string{"one", "two"}, h.admin, false, false},
		{"refused call", []string{"req-refused"}, "fat_" + strings.Repeat("z", 52), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.TakeAll()
			ctx := h.operatorCtx(tt.token)
			for _, v := range tt.sent {
				ctx = metadata.AppendToOutgoingContext(ctx, cplog.RequestIDHeader, v)
			}
			var header metadata.MD
			_, err := fc.CreateJoinToken(ctx, &flotillav1.CreateJoinTokenRequest{}, grpc.Header(&header))
			if (err != nil) != tt.failed {
				t.Fatalf("CreateJoinToken: %v, want failed=%v", err, tt.failed)
			}
			got := header.Get(cplog.RequestIDHeader)
			if len(got) != 1 || !cplog.ValidRequestID(got[0]) {
				t.Fatalf("response header %s = %q, want one valid ID", cplog.RequestIDHeader, got)
			}
			if tt.kept && got[0] != tt.sent[0] {
				t.Errorf("request ID %q, want the one sent, %q", got[0], tt.sent[0])
			}
			if !tt.kept && len(tt.sent) > 0 && got[0] == tt.sent[0] {
				t.Errorf("request ID %q kept, want it replaced", got[0])
			}
			for _, msg := range []string{"finished call", "audit"} {
				lines := callLines(logs, msg, "")
				if len(lines) != 1 {
					t.Fatalf("%d %q lines, want 1", len(lines), msg)
				}
				if id := lines[0].ContextMap()["request_id"]; id != got[0] {
					t.Errorf("%q line: request_id %v, want %q", msg, id, got[0])
				}
			}
			// The audit row keeps it, and the listing finds the row by it.
			list, err := h.adminClient().ListAuditEvents(h.operatorCtx(h.admin), &flotillav1.ListAuditEventsRequest{RequestId: got[0]})
			if err != nil {
				t.Fatalf("ListAuditEvents by request ID: %v", err)
			}
			if evs := list.GetEvents(); len(evs) != 1 || evs[0].GetRequestId() != got[0] ||
				evs[0].GetMethod() != "/flotilla.v1.FleetService/CreateJoinToken" {
				t.Errorf("audit events with request ID %q = %v, want the one CreateJoinToken", got[0], evs)
			}
		})
	}
}

// TestQuietCallsAtDebug checks that health checks and reflection are
// logged at debug and the API at info, and that streams get a request ID
// too.
func TestQuietCallsAtDebug(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := start(t, servertest.WithLogger(zap.New(core)))
	conn := h.dial(h.serverTLS())
	ctx := context.Background()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	stream, err := v1reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list := &v1reflectionpb.ServerReflectionRequest{MessageRequest: &v1reflectionpb.ServerReflectionRequest_ListServices{}}
	if err := stream.Send(list); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	header, err := stream.Header()
	if err != nil || len(header.Get(cplog.RequestIDHeader)) != 1 {
		t.Errorf("reflection stream header %v (%v), want one %s", header, err, cplog.RequestIDHeader)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	_, _ = stream.Recv() // the server ends the stream
	if _, err := h.fleet().ListAgents(h.operatorCtx(h.admin), &flotillav1.ListAgentsRequest{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		service string
		level   zapcore.Level
	}{
		{healthpb.Health_ServiceDesc.ServiceName, zapcore.DebugLevel},
		{v1reflectionpb.ServerReflection_ServiceDesc.ServiceName, zapcore.DebugLevel},
		{flotillav1.FleetService_ServiceDesc.ServiceName, zapcore.InfoLevel},
	}
	for _, tt := range tests {
		var lines []observer.LoggedEntry
		eventually(t, 5*time.Second, tt.service+" logged", func() bool {
			lines = callLines(logs, "finished call", tt.service)
			return len(lines) > 0
		})
		for _, e := range lines {
			if e.Level != tt.level {
				t.Errorf("%s logged at %s, want %s", tt.service, e.Level, tt.level)
			}
		}
	}
}
