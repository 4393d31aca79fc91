package server

import (
	"context"
	"strings"

	grpclog "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	v1reflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alphareflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"flotilla.dev/controlplane/internal/logging"
)

// quietServices are logged at debug: load balancers check health every few
// seconds and grpcurl asks reflection before every call, and at info they
// would drown the lines that say what changed.
var quietServices = map[string]bool{
	healthpb.Health_ServiceDesc.ServiceName:                        true,
	v1reflectiongrpc.ServerReflection_ServiceDesc.ServiceName:      true,
	v1alphareflectiongrpc.ServerReflection_ServiceDesc.ServiceName: true,
}

// quietMethod reports whether the full method name belongs to a quiet service.
func quietMethod(fullMethod string) bool {
	svc, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return quietServices[svc]
}

// callLogOptions are the logging interceptor's options: one line when a
// call ends, carrying its request ID, at the level its code deserves, or
// at debug for a quiet service.
func callLogOptions(quiet bool) []grpclog.Option {
	opts := []grpclog.Option{
		grpclog.WithLogOnEvents(grpclog.FinishCall),
		grpclog.WithFieldsFromContext(logging.RequestIDFields),
	}
	if quiet {
		opts = append(opts, grpclog.WithLevels(func(codes.Code) grpclog.Level { return grpclog.LevelDebug }))
	}
	return opts
}

// callLogInterceptors log every call but the agents' streams (see
// notAgentStream) to l.
func callLogInterceptors(l grpclog.Logger) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	loudUnary := grpclog.UnaryServerInterceptor(l, callLogOptions(false)...)
	quietUnary := grpclog.UnaryServerInterceptor(l, callLogOptions(true)...)
	loudStream := grpclog.StreamServerInterceptor(l, callLogOptions(false)...)
	quietStream := grpclog.StreamServerInterceptor(l, callLogOptions(true)...)
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if quietMethod(info.FullMethod) {
			return quietUnary(ctx, req, info, handler)
		}
		return loudUnary(ctx, req, info, handler)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if quietMethod(info.FullMethod) {
			return quietStream(srv, ss, info, handler)
		}
		return loudStream(srv, ss, info, handler)
	}
	return unary, selector.StreamServerInterceptor(stream, notAgentStream)
}
