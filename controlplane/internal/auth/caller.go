package auth

import (
	"context"
	"crypto/x509"
	"sync"
)

// callerSlot receives the caller the Authenticator identified for one call.
type callerSlot struct {
	mu sync.Mutex
	p  Principal
	ok bool
}

type callerSlotKey struct{}

// TrackCaller returns a context into which AuthFunc records the caller it
// identifies — even when it then refuses the call, for lack of a role or
// because a deregistered agent presented its certificate — and a function
// that reads it. The audit interceptor runs before authentication and uses
// it to name who made a refused call.
func TrackCaller(ctx context.Context) (context.Context, func() (Principal, bool)) {
	slot := &callerSlot{}
	return context.WithValue(ctx, callerSlotKey{}, slot), func() (Principal, bool) {
		slot.mu.Lock()
		defer slot.mu.Unlock()
		return slot.p, slot.ok
	}
}

// noteCaller records p in the context's caller slot, if it has one.
func noteCaller(ctx context.Context, p Principal) {
	if slot, ok := ctx.Value(callerSlotKey{}).(*callerSlot); ok {
		slot.mu.Lock()
		slot.p, slot.ok = p, true
		slot.mu.Unlock()
	}
}

// ClientCertificate returns the verified client certificate of the call's
// TLS connection.
func ClientCertificate(ctx context.Context) (*x509.Certificate, error) {
	return verifiedClientCert(ctx)
}
