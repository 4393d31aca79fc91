package api

import (
	"encoding/base64"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPageTokenRoundTrip(t *testing.T) {
	for _, l := range []pageListing{listingAgents, listingCommands, listingRollouts, listingAuditEvents} {
		for _, cursor := range []string{"ag-7k2m9q4x", "42", "fc-\x00weird", strings.Repeat("x", maxShortString)} {
			f := pageFilter("role=web", enumList([]int32{1, 3}))
			got, err := decodePageToken(l, f, encodePageToken(l, f, cursor))
			if err != nil || got != cursor {
				t.Errorf("%s: cursor %q came back as %q, %v", l, cursor, got, err)
			}
		}
	}
}

func TestPageTokenRefusesTokensItDidNotIssue(t *testing.T) {
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	f := pageFilter("role=web", "1,")
	tests := []struct {
		name    string
		listing pageListing
		filter  string
		tok     string
		msg     string
	}{
		{"not base64", listingCommands, f, "!!", "not a token from a previous ListCommands response"},
		{"a bare ID, the old ListCommands format", listingCommands, f, b64("fc-123"), "not a token from a previous ListCommands"},
		{"the old ListAgents format", listingAgents, f, b64("agents:ag-1"), "not a token from a previous ListAgents"},
		{"the old ListAuditEvents format", listingAuditEvents, f, "YXVkaXQ6NDI", "not a token from a previous ListAuditEvents"},
		{"another listing's token", listingRollouts, f, encodePageToken(listingCommands, f, "fc-1"), "not a token from a previous ListRollouts"},
		{"another version", listingAgents, f, b64("p0\x00ListAgents\x00" + filterDigest(f) + "\x00ag-1"), "not a token from a previous ListAgents"},
		{"an empty cursor", listingAgents, f, encodePageToken(listingAgents, f, ""), "not a token from a previous ListAgents"},
		{"too long", listingAgents, f, encodePageToken(listingAgents, f, strings.Repeat("a", 2*maxShortString)), "not a token"},
		{"trailing padding", listingAgents, f, encodePageToken(listingAgents, f, "ag-1") + "==", "not a token"},
		{"another filter", listingAgents, pageFilter("role=db", "1,"), encodePageToken(listingAgents, f, "ag-1"), "another filter"},
		{"a filter split differently", listingAgents, pageFilter("role=web\x001,", ""), encodePageToken(listingAgents, pageFilter("role=web", "1,\x00"), "ag-1"), "another filter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cursor, err := decodePageToken(tt.listing, tt.filter, tt.tok)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("decodePageToken = %q, %v; want InvalidArgument", cursor, err)
			}
			msg := status.Convert(err).Message()
			if !strings.HasPrefix(msg, "page_token: ") || !strings.Contains(msg, tt.msg) {
				t.Errorf("message %q, want page_token: …%s…", msg, tt.msg)
			}
		})
	}
}
