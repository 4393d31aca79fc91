package auth_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"flotilla.dev/controlplane/internal/auth"
)

func TestTrackCaller(t *testing.T) {
	st := openStore(t)
	tok := seedTokens(t, st)
	a := auth.NewAuthenticator(st, func() time.Time { return t0 })

	// A refused call still names its caller.
	ctx, caller := auth.TrackCaller(callCtx(createJoinToken, []string{"Bearer " + tok.viewer}, nil))
	if _, err := authenticate(a, ctx); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("AuthFunc = %v, want PermissionDenied", err)
	}
	p, ok := caller()
	if !ok || p.String() != "token:at-viewer" || p.Role != auth.RoleViewer {
		t.Fatalf("caller = %+v, %v; want token:at-viewer", p, ok)
	}
	// An unknown token identifies nobody.
	ctx, caller = auth.TrackCaller(callCtx(createJoinToken, []string{"Bearer fat_nope"}, nil))
	if _, err := authenticate(a, ctx); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("AuthFunc = %v", err)
	}
	if p, ok := caller(); ok {
		t.Fatalf("caller = %+v for an unknown token", p)
	}
}

func TestPrincipalString(t *testing.T) {
	for _, tt := range []struct {
		p    auth.Principal
		want string
	}{
		{auth.Principal{Kind: "operator", ID: "at-1"}, "token:at-1"},
		{auth.Principal{Kind: "operator", ID: "alice", Certificate: true}, "operator-cert:alice"},
		{auth.Principal{Kind: "agent", ID: "web-1-abc"}, "agent:web-1-abc"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}
