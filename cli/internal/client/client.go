package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/config"
	"flotilla.dev/cli/internal/exitcode"
)

// Client is a connection to one control plane and its services.
type Client struct {
	conn *grpc.ClientConn

	// Fleet is FleetService: agents, join tokens, fleet commands.
	Fleet flotillav1.FleetServiceClient
	// Rollout is RolloutService: services and rollouts.
	Rollout flotillav1.RolloutServiceClient
	// Admin is AdminService: tokens, agents' removal, the audit trail.
	Admin flotillav1.AdminServiceClient
	// Backup is BackupService: backup policies and the backup catalog.
	Backup flotillav1.BackupServiceClient
	// Notification is NotificationService: notification subscriptions.
	Notification flotillav1.NotificationServiceClient
}

// Dialer connects to an address; tests pass one to reach an in-memory
// listener. nil dials TCP.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// Options are what New needs besides the connection settings.
type Options struct {
	// UserAgent is sent with every call ("flotilla/<version>").
	UserAgent string
	// Dialer replaces the TCP dialer when set.
	Dialer Dialer
}

// New prepares a connection to c.Address; nothing is dialed until the
// first call. Errors in the credential files are Invalid.
func New(c config.Connection, opts Options) (*Client, error) {
	tlsCfg, err := tlsConfig(c)
	if err != nil {
		return nil, exitcode.With(exitcode.Invalid, err)
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithUserAgent(opts.UserAgent),
		// A watch can be silent for minutes; keepalives find a dead
		// connection (a load balancer that dropped it) without waiting
		// for the kernel.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if c.Token != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer(c.Token)))
	}
	if opts.Dialer != nil {
		dialOpts = append(dialOpts, grpc.WithContextDialer(opts.Dialer))
	}
	conn, err := grpc.NewClient("dns:///"+c.Address, dialOpts...)
	if err != nil {
		return nil, exitcode.Withf(exitcode.Invalid, "address %q: %v", c.Address, err)
	}
	return &Client{
		conn:    conn,
		Fleet:   flotillav1.NewFleetServiceClient(conn),
		Rollout: flotillav1.NewRolloutServiceClient(conn),
		Admin:   flotillav1.NewAdminServiceClient(conn),
		Backup:  flotillav1.NewBackupServiceClient(conn),

		Notification: flotillav1.NewNotificationServiceClient(conn),
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// tlsConfig is the TLS configuration of c: the CA file's roots (else the
// system's) and the operator certificate, when set.
func tlsConfig(c config.Connection) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("operator certificate: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// bearer sends an API token as "authorization: Bearer <token>".
type bearer string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: a
// token never goes over plain text.
func (b bearer) RequireTransportSecurity() bool { return true }
