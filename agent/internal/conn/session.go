package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/logging"
	"flotilla.dev/pkg/run"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// errClosedByServer is how a stream ends when the control plane returns
	// OK: the agent still reconnects, since it should always have a stream.
	errClosedByServer = errors.New("the control plane closed the stream")
	// errSendClosed is returned by send after the agent closed its side.
	errSendClosed = errors.New("stream closed for sending")
)

type stream = grpc.BidiStreamingClient[flotillav1.ConnectRequest, flotillav1.ConnectResponse]

// session is one stream, from hello to its end.
type session struct {
	c      *Client
	stream stream
	cancel context.CancelFunc // aborts the stream
	log    *zap.Logger

	sendMu     sync.Mutex // gRPC allows one sender at a time
	sendClosed bool

	// refresh asks the heartbeat loop for a heartbeat taken now; the
	// channel sent is closed once it is sent (RefreshHeartbeat).
	refresh chan chan struct{}
	// ended is closed when the session is over.
	ended chan struct{}
}

// session runs one stream until it fails or ctx is done, and reports whether
// the control plane welcomed it.
func (c *Client) session(ctx context.Context, client flotillav1.AgentServiceClient, log *zap.Logger) (welcomed bool, err error) {
	// Once welcomed, the stream outlives ctx by up to ShutdownGrace, so that
	// shutdown can close it cleanly instead of resetting it. Until then there
	// is nothing to close gracefully, and shutdown aborts it at once (opening
	// a stream can wait up to a connection timeout).
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	abortOnShutdown := context.AfterFunc(ctx, cancel)
	defer abortOnShutdown()

	st, err := client.Connect(streamCtx)
	if err != nil {
		return false, fmt.Errorf("opening the stream: %w", err)
	}
	s := &session{c: c, stream: st, cancel: cancel, log: log, refresh: make(chan chan struct{}), ended: make(chan struct{})}
	defer close(s.ended)

	if err := s.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Hello{Hello: c.cfg.Hello()}}); err != nil {
		return false, fmt.Errorf("sending hello: %w", s.sendFailure(err))
	}
	welcome, err := s.awaitWelcome()
	if err != nil {
		return false, err
	}
	abortOnShutdown()

	s.log = log.With(logging.AgentID(welcome.GetAgentId()))
	s.log.Info("connected",
		zap.String("server_version", welcome.GetServerVersion()),
		zap.Time("server_time", welcome.GetServerTime().AsTime()),
		zap.Duration("clock_skew", welcome.GetServerTime().AsTime().Sub(c.cfg.Clock.Now())))
	defer c.detach(s)
	// A report stuck on flow control must not hold up shutdown; there is
	// nothing to close gracefully before it is sent.
	abortReport := context.AfterFunc(ctx, cancel)
	err = s.sendJournalReport()
	abortReport()
	if err != nil {
		return true, fmt.Errorf("sending the journal report: %w", s.sendFailure(err))
	}
	return true, s.serve(ctx)
}

// awaitWelcome reads the stream's first message, which must be a welcome.
func (s *session) awaitWelcome() (*flotillav1.Welcome, error) {
	var timedOut atomic.Bool
	timer := s.c.cfg.Clock.AfterFunc(s.c.cfg.WelcomeTimeout, func() {
		timedOut.Store(true)
		s.cancel()
	})
	defer timer.Stop()

	msg, err := s.stream.Recv()
	switch {
	case timedOut.Load():
		return nil, fmt.Errorf("no welcome within %v", s.c.cfg.WelcomeTimeout)
	case err != nil:
		return nil, fmt.Errorf("waiting for the welcome: %w", err)
	case msg.GetWelcome() == nil:
		return nil, fmt.Errorf("protocol error: the control plane's first message is %T, want a welcome", msg.GetBody())
	}
	return msg.GetWelcome(), nil
}

// serve runs the heartbeat and receive loops until the stream ends or ctx is
// done; then it closes the stream gracefully.
func (s *session) serve(ctx context.Context) error {
	recvDone := make(chan error, 1)
	go func() { recvDone <- run.Safe(s.receive)(ctx) }()

	hbCtx, stopHeartbeats := context.WithCancel(ctx)
	defer stopHeartbeats()
	hbDone := make(chan error, 1)
	go func() { hbDone <- run.Safe(s.heartbeats)(hbCtx) }()

	select {
	case err := <-recvDone:
		stopHeartbeats()
		<-hbDone
		return err
	case err := <-hbDone:
		if err == nil { // ctx is done: the agent is shutting down
			return s.close(recvDone)
		}
		// The heartbeat loop failed. If a send failed, the stream is already
		// over and Recv returns its status, the better reason.
		s.cancel()
		if rerr := <-recvDone; status.Code(rerr) != codes.Canceled {
			return rerr
		}
		return err
	}
}

// close ends the stream on shutdown: stop sending, let the control plane end
// the stream (it then knows the agent left on purpose), and abort it if that
// takes longer than ShutdownGrace.
func (s *session) close(recvDone <-chan error) error {
	s.sendMu.Lock()
	s.sendClosed = true
	err := s.stream.CloseSend()
	s.sendMu.Unlock()
	if err != nil {
		s.log.Warn("closing the stream", zap.Error(err))
	}
	grace := s.c.cfg.Clock.NewTimer(s.c.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case err := <-recvDone:
		if !errors.Is(err, errClosedByServer) {
			s.log.Warn("stream ended with an error during shutdown", zap.Error(err))
		}
	case <-grace.Chan():
		s.log.Warn("the control plane did not end the stream in time; aborting it",
			zap.Duration("grace", s.c.cfg.ShutdownGrace))
		s.cancel()
		<-recvDone
	}
	return nil
}

// heartbeats sends one heartbeat at once, then one per interval, and one
// whenever RefreshHeartbeat asks (taken after it asked). Only this loop
// takes heartbeats: a source need not be safe for concurrent use.
func (s *session) heartbeats(ctx context.Context) error {
	// The ticker exists before the first send, so that a test seeing the
	// first heartbeat can advance a fake clock for the next one.
	ticker := s.c.cfg.Clock.NewTicker(s.c.cfg.HeartbeatInterval)
	defer ticker.Stop()
	var asked chan struct{}
	for {
		hb := s.c.cfg.Heartbeats.Heartbeat(ctx)
		if ctx.Err() != nil {
			return nil // readings cut short by shutdown are not worth sending
		}
		if err := s.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Heartbeat{Heartbeat: hb}}); err != nil {
			return fmt.Errorf("sending heartbeat: %w", err)
		}
		if asked != nil {
			close(asked)
			asked = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.Chan():
		case asked = <-s.refresh:
		}
	}
}

// receive reads the control plane's messages until the stream ends.
func (s *session) receive(context.Context) error {
	for {
		msg, err := s.stream.Recv()
		if errors.Is(err, io.EOF) {
			return errClosedByServer
		}
		if err != nil {
			return err
		}
		if err := s.handle(msg); err != nil {
			return err
		}
	}
}

// send sends one message; gRPC streams allow only one sender at a time.
func (s *session) send(msg *flotillav1.ConnectRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.sendClosed {
		return errSendClosed
	}
	return s.stream.Send(msg)
}

// sendFailure turns a failed send into the stream's real status: gRPC reports
// a stream the server ended as io.EOF on Send, and the status on Recv.
func (s *session) sendFailure(err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if _, rerr := s.stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
		return rerr
	}
	return errClosedByServer
}
