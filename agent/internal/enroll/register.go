package enroll

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/dial"
	"flotilla.dev/agent/internal/endpoint"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/logging"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrJoinTokenRejected means the control plane answered Unauthenticated: the
// join token is wrong, expired, revoked or used up. Retrying cannot help.
var ErrJoinTokenRejected = errors.New("the control plane rejected the join token (it is wrong, expired, revoked or used up); " +
	"create a new one with FleetService.CreateJoinToken")

// Register registers the agent with a new key and saves the result, replacing
// any saved identity. It retries while the control plane is unavailable and
// fails at once on a rejected token (ErrJoinTokenRejected), an untrusted
// server (ErrUntrustedServer) or any other definite answer.
func (e *Enroller) Register(ctx context.Context) (*Identity, error) {
	return e.register(ctx, nil)
}

// register registers. Without a CA file or pin configured, it trusts
// known, the CA bundle of an earlier registration, if there is one: an
// agent whose certificate expired registers again with the trust it had.
func (e *Enroller) register(ctx context.Context, known *x509.CertPool) (*Identity, error) {
	if err := e.waitForFiles(ctx); err != nil {
		return nil, err
	}
	token, err := e.joinToken()
	if err != nil {
		return nil, err
	}
	var trust *bootstrapTrust
	if e.cfg.CAFile == "" && e.cfg.CAPin == nil && known != nil {
		trust = newBundleTrust(known, e.cfg.Clock.Now)
	} else if trust, err = newBootstrapTrust(e.cfg.CAFile, e.cfg.CAPin, e.cfg.Clock.Now); err != nil {
		return nil, err
	}
	key, csr, err := newKeyAndCSR(e.cfg.Hostname)
	if err != nil {
		return nil, err
	}
	req := &flotillav1.RegisterRequest{JoinToken: token, Csr: csr, Hostname: e.cfg.Hostname, Labels: e.cfg.Labels}

	resp, err := e.call(ctx, trust, req)
	if err != nil {
		return nil, err
	}
	return e.accept(resp, key, trust)
}

// call sends req until it gets a definite answer. Each attempt goes to the
// next endpoint; a failed attempt moves on to the next one at once, and
// only a full cycle of failures waits for the backoff.
func (e *Enroller) call(ctx context.Context, trust *bootstrapTrust, req *flotillav1.RegisterRequest) (*flotillav1.RegisterResponse, error) {
	endpoints, err := endpoint.New(e.cfg.Endpoints) // a random start for every registration
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	bo, _ := backoff.New(e.cfg.Backoff) // validated in New

	for attempt := 1; ; attempt++ {
		resp, ep, err := e.attempt(ctx, endpoints, trust, req, attempt)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if terr := trust.lastFailure(); terr != nil {
			return nil, fmt.Errorf("enroll: register at %s: %w", ep, terr)
		}
		if err := classify(err); err != nil {
			return nil, err
		}
		var delay time.Duration
		if endpoints.Failed() {
			delay = bo.Next() // every endpoint failed in turn
		}
		if asked := serverRetryDelay(err); asked > 0 {
			// A replica that sheds registrations is in a storm the others
			// share (a fleet booting at once): trying the next one at once
			// costs both sides a TLS handshake and adds to the storm. Wait
			// what it asked, spread so that the refused come back apart.
			delay = max(delay, asked+time.Duration(rand.Int64N(int64(asked)/2+1)))
		}
		e.log.Warn("registration failed, retrying", logging.ControlPlaneAddress(ep.Address),
			zap.Error(err), zap.Duration("backoff", delay))
		if delay > 0 {
			if err := backoff.Wait(ctx, e.cfg.Clock, delay); err != nil {
				return nil, err
			}
		}
	}
}

// attempt sends req once, to the next endpoint, on a connection of its own.
// An address that cannot be resolved is Unavailable, as a dead one is.
func (e *Enroller) attempt(ctx context.Context, endpoints *endpoint.Rotation, trust *bootstrapTrust,
	req *flotillav1.RegisterRequest, n int,
) (*flotillav1.RegisterResponse, endpoint.Endpoint, error) {
	ep, err := endpoints.Next(ctx)
	if err != nil {
		return nil, ep, status.Error(codes.Unavailable, err.Error())
	}
	e.log.Info("registering", logging.ControlPlaneAddress(ep.Address), zap.Int("attempt", n))
	conn, err := dial.Endpoint(ep, trust.tlsConfig, e.cfg.DialOptions...)
	if err != nil {
		return nil, ep, fmt.Errorf("enroll: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.AttemptTimeout)
	defer cancel()
	resp, err := flotillav1.NewAgentServiceClient(conn).Register(ctx, req)
	return resp, ep, err
}

// serverRetryDelay is the delay a control plane asked for with a refusal
// (ResourceExhausted with a RetryInfo detail: busy registering other
// agents, or this address rate-limited), or 0.
func serverRetryDelay(err error) time.Duration {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return 0
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return max(ri.GetRetryDelay().AsDuration(), 0)
		}
	}
	return 0
}

// classify returns nil for an error worth retrying, or the final error.
func classify(err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return nil
	case codes.Unauthenticated:
		return fmt.Errorf("enroll: register: %w: %w", ErrJoinTokenRejected, err)
	default:
		return fmt.Errorf("enroll: register: %w", err)
	}
}

// accept checks the registration's answer and saves it.
func (e *Enroller) accept(resp *flotillav1.RegisterResponse, key *ecdsa.PrivateKey, trust *bootstrapTrust) (*Identity, error) {
	id, err := newIdentity(resp.GetAgentId(), key, resp.GetCertificatePem(), resp.GetCaBundlePem(), e.cfg.Clock.Now())
	if err != nil {
		return nil, fmt.Errorf("enroll: the control plane's registration answer is unusable: %w", err)
	}
	if err := trust.checkBundle(resp.GetCaBundlePem()); err != nil {
		return nil, fmt.Errorf("enroll: the control plane's registration answer is unusable: %w", err)
	}
	if err := e.save(id, key, resp.GetCertificatePem(), resp.GetCaBundlePem()); err != nil {
		return nil, err
	}
	e.log.Info("registered",
		logging.AgentID(id.AgentID),
		zap.Any("labels", resp.GetLabels()),
		zap.String("certificate_serial", id.Serial()),
		zap.Time("certificate_expires_at", id.NotAfter()),
		zap.String("state_dir", e.store.Dir()))
	return id, nil
}
