package logging

import (
	"context"
	"crypto/rand"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pkglogging "flotilla.dev/pkg/logging"
)

// RequestIDHeader is the metadata key that carries a call's request ID in
// both directions: a client may send one, and every response returns the
// one the call was logged under.
const RequestIDHeader = "x-request-id"

// MaxRequestIDLen bounds a request ID a client sends; a longer one is
// replaced, not truncated, so two distinct IDs never log as one.
const MaxRequestIDLen = 128

type requestIDKey struct{}

// RequestIDFrom returns the request ID of the call ctx belongs to, and
// false outside a call the request-ID interceptors saw.
func RequestIDFrom(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(requestIDKey{}).(string)
	return id, ok
}

// RequestIDFields adds the call's request ID to the fields of the gRPC
// logging interceptor (logging.WithFieldsFromContext).
func RequestIDFields(ctx context.Context) logging.Fields {
	if id, ok := RequestIDFrom(ctx); ok {
		return logging.Fields{pkglogging.RequestIDKey, id}
	}
	return nil
}

// UnaryRequestID gives every unary call a request ID (see requestID) and
// returns it in the response header. Place it first in the chain, so the
// interceptors after it log the ID, and so that a call they refuse still
// returns it.
func UnaryRequestID() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		id := requestID(ctx)
		// SetHeader fails only once headers are sent, which no handler
		// has done yet.
		_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id))
		return handler(context.WithValue(ctx, requestIDKey{}, id), req)
	}
}

// StreamRequestID is UnaryRequestID for streams.
func StreamRequestID() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		id := requestID(ss.Context())
		_ = ss.SetHeader(metadata.Pairs(RequestIDHeader, id))
		return handler(srv, &requestIDStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), requestIDKey{}, id)})
	}
}

type requestIDStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *requestIDStream) Context() context.Context { return s.ctx }

// requestID is the x-request-id the client sent when there is exactly one
// and it is valid, else a new random one.
func requestID(ctx context.Context) string {
	if vals := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(vals) == 1 && ValidRequestID(vals[0]) {
		return vals[0]
	}
	return rand.Text()
}

// ValidRequestID reports whether id may be used as a request ID: 1 to
// MaxRequestIDLen printable ASCII characters other than space, so that it
// cannot forge a log line or smuggle control characters into one.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}
