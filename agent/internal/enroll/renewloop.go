package enroll

import (
	"context"
	"fmt"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/pkg/logging"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The renewal window, in fractions of a certificate's lifetime counted from
// NotBefore. Two thirds on average leaves the last third to retry in, and
// the spread keeps agents registered together from renewing together.
const (
	RenewalWindowStart = 0.60
	RenewalWindowEnd   = 0.70
)

// maxWaitStep bounds one wait on the clock. A long wait is cut into steps,
// each measured against the wall clock again, so that a host that was
// suspended (its monotonic clock stood still) does not oversleep its renewal.
const maxWaitStep = time.Hour

// RenewalTime is when to renew a certificate valid from notBefore to
// notAfter: at r (in [0, 1)) across the renewal window.
func RenewalTime(notBefore, notAfter time.Time, r float64) time.Time {
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return notBefore
	}
	frac := RenewalWindowStart + (RenewalWindowEnd-RenewalWindowStart)*r
	return notBefore.Add(time.Duration(float64(life) * frac))
}

// RunRenewal keeps the certificate of creds fresh until ctx is done, then
// returns nil; it is one of the agent's runner tasks, and never fails the
// agent: the current certificate stays usable while renewal is retried.
//
// Each certificate is renewed once its renewal time (RenewalTime) has come;
// a failed renewal is retried with a capped, jittered backoff. A certificate
// that has expired cannot authenticate, not even to renew itself: the agent
// then says so and registers again if it has a join token (join_token_file
// is read at each attempt, so an operator can provide one without a
// restart), and otherwise keeps retrying with an error that says what to do.
func (e *Enroller) RunRenewal(ctx context.Context, creds *Credentials) error {
	// pace spaces renewals whose certificates are due as soon as issued
	// (a very short lifetime, or a clock ahead of the control plane's),
	// which would otherwise follow each other without a pause.
	pace, _ := backoff.New(e.cfg.RenewalBackoff) // validated in New
	for renewed := false; ; renewed = true {
		id := creds.Current()
		at := RenewalTime(id.NotBefore(), id.NotAfter(), e.cfg.Rand())
		if now := e.cfg.Clock.Now(); renewed && !at.After(now) {
			delay := pace.Next()
			at = now.Add(delay)
			e.log.Warn("the new certificate is due for renewal as soon as issued: its lifetime is very short, "+
				"or this host's clock is ahead of the control plane's; pacing renewals",
				logging.AgentID(id.AgentID),
				zap.Time("certificate_not_before", id.NotBefore()),
				zap.Time("certificate_expires_at", id.NotAfter()),
				zap.Duration("delay", delay))
		} else {
			pace.Reset()
		}
		e.log.Info("certificate renewal scheduled",
			logging.AgentID(id.AgentID),
			zap.Time("renew_at", at),
			zap.Time("certificate_expires_at", id.NotAfter()))
		if waitUntil(ctx, e.cfg.Clock, at) != nil {
			return nil
		}
		if e.renewUntilDone(ctx, creds) != nil {
			return nil
		}
	}
}

// waitUntil waits on clock until at, or returns ctx.Err().
func waitUntil(ctx context.Context, clock clockwork.Clock, at time.Time) error {
	for {
		d := at.Sub(clock.Now())
		if d <= 0 {
			return nil
		}
		if err := backoff.Wait(ctx, clock, min(d, maxWaitStep)); err != nil {
			return err
		}
	}
}

// renewUntilDone renews (or registers again) until that succeeds, or
// returns ctx.Err().
func (e *Enroller) renewUntilDone(ctx context.Context, creds *Credentials) error {
	bo, _ := backoff.New(e.cfg.RenewalBackoff) // validated in New
	announced := false
	for attempt := 1; ; attempt++ {
		var err error
		cur := creds.Current()
		if e.cfg.Clock.Now().Before(cur.NotAfter()) {
			_, err = e.Renew(ctx, creds)
		} else {
			if !announced {
				e.log.Error("the agent's certificate has expired: an expired certificate cannot authenticate, "+
					"not even to renew it, so the agent must register again with a join token",
					logging.AgentID(cur.AgentID),
					zap.Time("certificate_expired_at", cur.NotAfter()))
				announced = true
			}
			err = e.reregister(ctx, creds)
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		delay := bo.Next()
		e.logFailure(cur, err, attempt, delay)
		if err := backoff.Wait(ctx, e.cfg.Clock, delay); err != nil {
			return err
		}
	}
}

// reregister replaces the expired identity of creds with a new
// registration. It trusts the CA bundle the agent has when no CA file or
// pin is configured.
func (e *Enroller) reregister(ctx context.Context, creds *Credentials) error {
	cur := creds.Current()
	expired := fmt.Sprintf("the certificate of agent %s expired at %s", cur.AgentID, cur.NotAfter().UTC().Format(time.RFC3339))
	if _, err := e.joinToken(); err != nil {
		return fmt.Errorf("enroll: %s and the agent cannot register again: %w: %w", expired, ErrCertificateExpired, err)
	}
	id, err := e.register(ctx, cur.CAs)
	if err != nil {
		return fmt.Errorf("enroll: %s; registering again: %w", expired, err)
	}
	creds.set(id)
	e.log.Warn("registered again after the certificate expired: the control plane knows this host under a new agent ID",
		zap.String("previous_agent_id", cur.AgentID),
		logging.AgentID(id.AgentID),
		zap.String("certificate_serial", id.Serial()),
		zap.Time("certificate_expires_at", id.NotAfter()))
	return nil
}

// logFailure logs a failed attempt with what happens next.
func (e *Enroller) logFailure(cur *Identity, err error, attempt int, delay time.Duration) {
	fields := []zap.Field{
		logging.AgentID(cur.AgentID),
		zap.Error(err),
		zap.Int("attempt", attempt),
		zap.Duration("backoff", delay),
		zap.Time("certificate_expires_at", cur.NotAfter()),
	}
	if hint := failureHint(err); hint != "" {
		fields = append(fields, zap.String("hint", hint))
	}
	left := cur.NotAfter().Sub(e.cfg.Clock.Now())
	if left <= 0 {
		e.log.Error("registering again after the certificate expired failed; retrying", fields...)
		return
	}
	e.log.Warn("certificate renewal failed; retrying",
		append(fields, zap.Duration("certificate_expires_in", left.Round(time.Second)))...)
}

// failureHint says what an operator can do about a renewal the control
// plane refused, or "" when retrying is all there is to do.
func failureHint(err error) string {
	switch status.Code(err) {
	case codes.Unimplemented:
		return "the control plane does not implement RenewCertificate: upgrade it before the certificate expires"
	case codes.Unauthenticated, codes.PermissionDenied:
		return "the control plane refused this agent's certificate: was the agent deleted or its certificate revoked? " +
			"If so, register the host again with a join token"
	default:
		return ""
	}
}
