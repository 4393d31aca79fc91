package server

import (
	"context"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/metrics"
)

// connectMethod is the agents' stream: every heartbeat and command event of
// the fleet arrives on it.
const connectMethod = flotillav1.AgentService_Connect_FullMethodName

// notAgentStream selects every call but the agents' streams. go-grpc-
// middleware's metrics and logging wrap each stream to account for every
// message (two clock readings, label lookups and an allocation per message
// and layer); on the agents' streams that came to a quarter of the cost of
// receiving a heartbeat. Those streams get agentStreamInterceptor instead,
// which counts how they end, and their messages are counted by what they
// carry (flotilla_heartbeats_received_total, the command metrics).
var notAgentStream = selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
	return c.FullMethod() != connectMethod
})

// agentStreamMetrics counts how agents' streams end.
type agentStreamMetrics struct {
	ended *prometheus.CounterVec
}

func newAgentStreamMetrics(reg prometheus.Registerer) *agentStreamMetrics {
	m := &agentStreamMetrics{ended: metrics.CounterVec("flotilla_agent_streams_ended_total",
		"Agent streams (AgentService/Connect) ended, by gRPC status code: OK when the agent closed it, Unavailable when it was lost or the control plane stopped, Aborted when a newer stream replaced it, Unauthenticated when refused.", "grpc_code")}
	for _, c := range []codes.Code{codes.OK, codes.Canceled, codes.Unavailable, codes.Aborted, codes.Unauthenticated, codes.InvalidArgument} {
		m.ended.WithLabelValues(c.String())
	}
	reg.MustRegister(m.ended)
	return m
}

// interceptor counts the end of each agent stream; put it first in the
// chain so that streams refused by authentication are counted too.
func (m *agentStreamMetrics) interceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		if info.FullMethod == connectMethod {
			m.ended.WithLabelValues(status.Code(err).String()).Inc()
		}
		return err
	}
}

// withoutAgentStream lists the server's methods but the agents' stream, so
// that the gRPC metrics are not pre-registered (at zero, forever) for a
// method they never count.
type withoutAgentStream struct{ srv *grpc.Server }

func (w withoutAgentStream) GetServiceInfo() map[string]grpc.ServiceInfo {
	infos := w.srv.GetServiceInfo()
	for name, info := range infos {
		methods := make([]grpc.MethodInfo, 0, len(info.Methods))
		for _, m := range info.Methods {
			if "/"+name+"/"+m.Name != connectMethod {
				methods = append(methods, m)
			}
		}
		info.Methods = methods
		infos[name] = info
	}
	return infos
}
