package dial

import (
	"crypto/tls"
	"errors"
	"time"

	"flotilla.dev/agent/internal/endpoint"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// Keepalive pings a silent connection so that a dead control plane (or a NAT
// that dropped the flow) is noticed within Time+Timeout rather than at the
// next failed write. The control plane enforces a minimum ping interval and
// closes connections that ping more often than every 15s (GOAWAY
// "too_many_pings"), so Time stays above that; without an active stream
// there is nothing to keep. A partitioned agent notices its dead
// connection within 40s and reconnects once the network is back.
//
// Timeout is the control plane's own (20s), not shorter: a busy control
// plane (a cold start of the fleet, the agents of a failed replica
// reconnecting) answers pings late, and a short deadline turns that delay
// into dropped streams whose reconnections (a TLS handshake each) load it
// further. With 5s, fleets of 2,000–9,000 agents on a starved machine
// collapsed that way (docs/performance.md). A control plane that dies
// outright closes its connections and the agents move at once; only a
// half-open connection waits for the ping.
var Keepalive = keepalive.ClientParameters{
	Time:                20 * time.Second,
	Timeout:             20 * time.Second,
	PermitWithoutStream: false,
}

// ConnectParams bound how long gRPC waits between two connection attempts.
// gRPC's default cap is 120 s; the agent's own retry loops cap at 30 s, and
// their delay is meaningless if the transport below waits longer.
var ConnectParams = grpc.ConnectParams{
	Backoff: backoff.Config{
		BaseDelay:  500 * time.Millisecond,
		Multiplier: 1.6,
		Jitter:     0.2,
		MaxDelay:   30 * time.Second,
	},
	MinConnectTimeout: 20 * time.Second,
}

// flowControlWindow is gRPC's default HTTP/2 window, set explicitly.
const flowControlWindow = 64 << 10

// New returns a client connection to address (host:port) over TLS with tlsConfig.
// No I/O happens until the first RPC. extra options come last, so tests can
// replace the dialer (bufconn).
func New(address string, tlsConfig *tls.Config, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	if tlsConfig == nil {
		return nil, errors.New("dial: a TLS config is required; the agent never dials in plaintext")
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithKeepaliveParams(Keepalive),
		grpc.WithConnectParams(ConnectParams),
		// TLS already buffers a whole decrypted record, so gRPC's own
		// 32 KiB read buffer only doubles it; the write buffer goes back
		// to a shared pool after each flush. An agent's stream is idle
		// between heartbeats, and the simulator runs thousands of them.
		grpc.WithReadBufferSize(0),
		grpc.WithSharedWriteBuffer(true),
		// A fixed window turns off gRPC's bandwidth estimator and the
		// pings it sends after the messages it receives.
		grpc.WithInitialWindowSize(flowControlWindow),
		grpc.WithInitialConnWindowSize(flowControlWindow),
	}
	return grpc.NewClient(address, append(opts, extra...)...)
}

// TLSFunc returns the TLS configuration of a connection to a control plane
// whose certificate must carry serverName.
type TLSFunc func(serverName string) *tls.Config

// Endpoint returns a client connection to one endpoint: its address is
// dialled as it is (it was resolved already, gRPC does not resolve it
// again), and the TLS configuration checks the endpoint's server name,
// which gRPC also sends as the :authority.
func Endpoint(ep endpoint.Endpoint, tlsFor TLSFunc, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	if tlsFor == nil {
		return nil, errors.New("dial: a TLS config is required; the agent never dials in plaintext")
	}
	return New("passthrough:///"+ep.Address, tlsFor(ep.ServerName), extra...)
}
