package api

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	cplog "flotilla.dev/controlplane/internal/logging"
)

func TestAuditQueryRequestID(t *testing.T) {
	q, err := auditQuery(&flotillav1.ListAuditEventsRequest{RequestId: "req-7f3a.2"})
	if err != nil || q.RequestID != "req-7f3a.2" {
		t.Fatalf("auditQuery = %+v, %v; want the request ID filter", q, err)
	}
	tests := []struct {
		name, id, want string
	}{
		{"space", "two words", `request_id: character ' ' (U+0020) at offset 3 not allowed`},
		{"non-ASCII", "req-é", `request_id: character 'é' (U+00E9) at offset 4 not allowed`},
		{"too long", strings.Repeat("r", cplog.MaxRequestIDLen+1), "request_id: 129 characters, at most 128 allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := auditQuery(&flotillav1.ListAuditEventsRequest{RequestId: tt.id})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("err = %v, want InvalidArgument with %q", err, tt.want)
			}
		})
	}
}

// A page token is bound to the request ID filter, and tokens of listings
// without one are those issued before the filter existed.
func TestAuditPageTokenRequestID(t *testing.T) {
	unfiltered := &flotillav1.ListAuditEventsRequest{Principal: "token:at-1"}
	old := encodePageToken(listingAuditEvents, pageFilter("token:at-1", "", "false", ""), "42")
	if auditFilter(unfiltered) != pageFilter("token:at-1", "", "false", "") {
		t.Errorf("the filter of a listing without a request ID changed: tokens issued before would be refused")
	}
	unfiltered.PageToken = old
	if q, err := auditQuery(unfiltered); err != nil || q.BeforeID != 42 {
		t.Fatalf("the earlier token: %+v, %v", q, err)
	}
	filtered := &flotillav1.ListAuditEventsRequest{Principal: "token:at-1", RequestId: "req-1", PageToken: old}
	if _, err := auditQuery(filtered); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "another filter") {
		t.Fatalf("a token of another request ID filter: %v, want it refused", err)
	}
}
