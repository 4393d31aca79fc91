package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

func testRevokeJoinToken(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	older, newer := newJoinToken("older", 1), newJoinToken("newer", 2)
	newer.CreatedAt = older.CreatedAt.Add(time.Minute)
	mustCreateJoinToken(t, s, older)
	mustCreateJoinToken(t, s, newer)

	got, err := s.RevokeJoinToken(ctx, "older", t0)
	if err != nil {
		t.Fatalf("RevokeJoinToken: %v", err)
	}
	want := older
	want.RevokedAt = t0
	assertEqual(t, got, want)
	// Revoking again keeps the first revocation time.
	again, err := s.RevokeJoinToken(ctx, "older", t0.Add(time.Hour))
	if err != nil || !again.RevokedAt.Equal(t0) {
		t.Fatalf("second RevokeJoinToken = %v, %v; want revoked_at kept at %s", again.RevokedAt, err, t0)
	}
	if _, err := s.RevokeJoinToken(ctx, "nope", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeJoinToken(unknown) = %v, want ErrNotFound", err)
	}
	// A revoked token admits nobody.
	_, err = s.RegisterAgent(ctx, older.Hash, t0, func(store.JoinToken) (store.Agent, error) {
		return store.Agent{ID: "a-1", State: store.AgentDisconnected}, nil
	})
	if !errors.Is(err, store.ErrJoinTokenInvalid) {
		t.Fatalf("RegisterAgent with a revoked token = %v, want ErrJoinTokenInvalid", err)
	}
	list, err := s.ListJoinTokens(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "newer" || list[1].ID != "older" {
		t.Fatalf("ListJoinTokens = %v, %v; want newer then older", list, err)
	}
}

func testAPITokenListGetRevoke(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	a, b := newAPIToken("a"), newAPIToken("b")
	b.CreatedAt = a.CreatedAt.Add(time.Second)
	b.CreatedBy = "token:a"
	for _, tok := range []store.APIToken{a, b} {
		if err := s.CreateAPIToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetAPIToken(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, got, b)
	if _, err := s.GetAPIToken(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetAPIToken(unknown) = %v", err)
	}
	list, err := s.ListAPITokens(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "b" {
		t.Fatalf("ListAPITokens = %v, %v; want b first", list, err)
	}
	rev, err := s.RevokeAPIToken(ctx, "a", t0)
	if err != nil || !rev.RevokedAt.Equal(t0) {
		t.Fatalf("RevokeAPIToken = %v, %v", rev, err)
	}
	rev, err = s.RevokeAPIToken(ctx, "a", t0.Add(time.Hour))
	if err != nil || !rev.RevokedAt.Equal(t0) {
		t.Fatalf("second RevokeAPIToken = %v, %v; want the first time kept", rev, err)
	}
	byHash, err := s.GetAPITokenByHash(ctx, a.Hash)
	if err != nil || !byHash.RevokedAt.Equal(t0) {
		t.Fatalf("GetAPITokenByHash after revoke = %v, %v", byHash, err)
	}
	if _, err := s.RevokeAPIToken(ctx, "nope", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeAPIToken(unknown) = %v", err)
	}
}

func testDeregisterAgentAndCertificate(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	mustRegisterAgent(t, s, store.Agent{ID: "web-1", Hostname: "web-1", State: store.AgentDisconnected, CertSerial: "01"})

	if err := s.UpdateAgentCertificate(ctx, "web-1", "02", t0.Add(time.Hour)); err != nil {
		t.Fatalf("UpdateAgentCertificate: %v", err)
	}
	a := mustGetAgent(t, s, "web-1")
	if a.CertSerial != "02" || !a.CertNotAfter.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after renewal: serial %q not after %s", a.CertSerial, a.CertNotAfter)
	}
	if err := s.UpdateAgentCertificate(ctx, "nope", "02", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateAgentCertificate(unknown) = %v", err)
	}

	got, err := s.DeregisterAgent(ctx, "web-1", t0, "host decommissioned")
	if err != nil || !got.DeregisteredAt.Equal(t0) || got.DeregisterReason != "host decommissioned" {
		t.Fatalf("DeregisterAgent = %+v, %v", got, err)
	}
	again, err := s.DeregisterAgent(ctx, "web-1", t0.Add(time.Hour), "other")
	if err != nil || !again.DeregisteredAt.Equal(t0) || again.DeregisterReason != "host decommissioned" {
		t.Fatalf("second DeregisterAgent = %+v, %v; want the first kept", again, err)
	}
	if _, err := s.DeregisterAgent(ctx, "nope", t0, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeregisterAgent(unknown) = %v", err)
	}
	// A deregistered agent's certificate is never updated again.
	if err := s.UpdateAgentCertificate(ctx, "web-1", "03", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateAgentCertificate after deregistration = %v, want ErrNotFound", err)
	}
}

func testAuditEvents(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	add := func(at time.Time, principal, method, code string) int64 {
		t.Helper()
		// Each call has its own request ID, but the first: a row from
		// before the store kept them.
		requestID := ""
		if principal != "token:a" || method != "/s/A" {
			requestID = "req-" + method + "-" + code
		}
		id, err := s.AppendAuditEvent(ctx, store.AuditEvent{At: at, Principal: principal, Role: "admin", Method: method,
			Request: `{"x":1}`, Peer: "10.0.0.1:5000", Code: code, RequestID: requestID})
		if err != nil {
			t.Fatalf("AppendAuditEvent: %v", err)
		}
		return id
	}
	id1 := add(t0, "token:a", "/s/A", "OK")
	id2 := add(t0.Add(time.Second), "token:b", "/s/B", "PermissionDenied")
	id3 := add(t0.Add(2*time.Second), "token:a", "/s/B", "")
	if !(id1 < id2 && id2 < id3) {
		t.Fatalf("IDs %d %d %d do not increase", id1, id2, id3)
	}
	if err := s.FinishAuditEvent(ctx, id3, "InvalidArgument", "name: required", 3*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishAuditEvent(ctx, 999, "OK", "", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("FinishAuditEvent(unknown) = %v", err)
	}
	ids := func(q store.AuditQuery) []int64 {
		t.Helper()
		evs, err := s.ListAuditEvents(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}
	tests := []struct {
		name string
		q    store.AuditQuery
		want []int64
	}{
		{"all newest first", store.AuditQuery{}, []int64{id3, id2, id1}},
		{"principal", store.AuditQuery{Principal: "token:a"}, []int64{id3, id1}},
		{"method", store.AuditQuery{Method: "/s/B"}, []int64{id3, id2}},
		{"failed only", store.AuditQuery{FailedOnly: true}, []int64{id3, id2}},
		{"since", store.AuditQuery{Since: t0.Add(time.Second)}, []int64{id3, id2}},
		{"page", store.AuditQuery{Limit: 2}, []int64{id3, id2}},
		{"next page", store.AuditQuery{Limit: 2, BeforeID: id2}, []int64{id1}},
		{"combined", store.AuditQuery{Principal: "token:a", FailedOnly: true}, []int64{id3}},
		{"request ID", store.AuditQuery{RequestID: "req-/s/B-PermissionDenied"}, []int64{id2}},
		{"request ID of no call", store.AuditQuery{RequestID: "req-none"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ids(tt.q)
			if len(got) != len(tt.want) {
				t.Fatalf("ids = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("ids = %v, want %v", got, tt.want)
				}
			}
		})
	}
	checkAuditEventFields(t, s, id2)
}

// checkAuditEventFields checks that the newest event of testAuditEvents
// comes back with every field, and the oldest (below before) without a
// request ID.
func checkAuditEventFields(t *testing.T, s store.Store, before int64) {
	t.Helper()
	ctx := context.Background()
	evs, _ := s.ListAuditEvents(ctx, store.AuditQuery{Limit: 1})
	e := evs[0]
	if e.Code != "InvalidArgument" || e.Message != "name: required" || e.Duration != 3*time.Millisecond ||
		e.Peer != "10.0.0.1:5000" || e.Request != `{"x":1}` || e.Role != "admin" || !e.At.Equal(t0.Add(2*time.Second)) ||
		e.RequestID != "req-/s/B-" {
		t.Fatalf("event = %+v", e)
	}
	// A row written without a request ID keeps none.
	oldest, _ := s.ListAuditEvents(ctx, store.AuditQuery{BeforeID: before})
	if len(oldest) != 1 || oldest[0].RequestID != "" {
		t.Fatalf("the row without a request ID = %+v, want it kept empty", oldest)
	}
}
