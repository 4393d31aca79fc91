package fakecp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Defaults of the fake.
const (
	ServerName = "controlplane.test"
	// Address is what agents under test dial: an IP literal, so gRPC's
	// default resolver needs no DNS, while DialOption routes it to bufconn.
	Address   = "127.0.0.1:7443"
	JoinToken = "fake-join-token"
)

// Server is the fake control plane.
type Server struct {
	flotillav1.UnimplementedAgentServiceServer

	CA *CA

	lis  *trackingListener
	grpc *grpc.Server

	mu            sync.Mutex
	registerErrs  []error // answered by the next Register calls, in order
	certTTL       time.Duration
	holdOnClose   bool
	noWelcome     bool
	registrations int
	registerCalls int
	streamCount   int // streams welcomed

	renewal renewalState

	streams chan *Stream
}

// Start starts a fake control plane and stops it when the test ends.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// Options configure a fake control plane started by StartWith.
type Options struct {
	// CA signs the server's certificate and the agents'; nil makes a new
	// one. Replicas of one control plane share their CA.
	CA *CA
	// Listener serves the control plane, e.g. a TCP listener on
	// 127.0.0.1 that agents dial at its address; nil serves in memory
	// (bufconn), reached through DialOption.
	Listener net.Listener
}

// StartWith starts a fake control plane configured by opts and stops it
// when the test ends.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := start(opts)
	if err != nil {
		t.Fatalf("fakecp: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func start(opts Options) (*Server, error) {
	ca := opts.CA
	if ca == nil {
		var err error
		if ca, err = NewCA("fake flotilla CA"); err != nil {
			return nil, err
		}
	}
	lis := opts.Listener
	if lis == nil {
		lis = bufconn.Listen(1 << 20)
	}
	serverCert, err := ca.ServerCertificate(ServerName)
	if err != nil {
		return nil, err
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.Cert)
	creds := credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{serverCert},
		// Register is called before the agent has a certificate; Connect
		// checks that one was verified.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  clientCAs,
	})
	s := &Server{
		CA:      ca,
		lis:     &trackingListener{Listener: lis},
		grpc:    grpc.NewServer(grpc.Creds(creds)),
		certTTL: time.Hour,
		streams: make(chan *Stream, 16),
	}
	flotillav1.RegisterAgentServiceServer(s.grpc, s)
	go func() { _ = s.grpc.Serve(s.lis) }()
	return s, nil
}

// Stop stops the server at once, ending every stream and closing its
// listener, as a control plane that dies does.
func (s *Server) Stop() { s.grpc.Stop() }

// Addr is the address of the server's listener ("bufconn" in memory).
func (s *Server) Addr() string { return s.lis.Addr().String() }

// DialOption routes the agent's connections to this server; only for a
// server served in memory.
func (s *Server) DialOption() grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return s.lis.Listener.(*bufconn.Listener).DialContext(ctx)
	})
}

// DropConnections closes every connection the server accepted, as a
// network failure would: the agent's streams end, and its next ones need
// new connections, with new TLS handshakes.
func (s *Server) DropConnections() { s.lis.closeAll() }

// Streams is how many streams the server welcomed.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streamCount
}

// FailRegister makes the next Register calls fail with errs, in order.
func (s *Server) FailRegister(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registerErrs = append(s.registerErrs, errs...)
}

// SetCertTTL sets the lifetime of the agent certificates issued from now on.
func (s *Server) SetCertTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certTTL = d
}

// HoldStreamsOnCloseSend makes Connect keep a stream open after the agent
// closed its side, to test the agent's shutdown deadline.
func (s *Server) HoldStreamsOnCloseSend() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdOnClose = true
}

// WithholdWelcome makes Connect never answer the hello, to test the agent's
// welcome timeout.
func (s *Server) WithholdWelcome(withhold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noWelcome = withhold
}

// Registrations is how many registrations succeeded.
func (s *Server) Registrations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registrations
}

// RegisterCalls is how many Register calls arrived.
func (s *Server) RegisterCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registerCalls
}

// Register implements AgentService.Register: the token must be JoinToken.
func (s *Server) Register(_ context.Context, req *flotillav1.RegisterRequest) (*flotillav1.RegisterResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registerCalls++
	if len(s.registerErrs) > 0 {
		err := s.registerErrs[0]
		s.registerErrs = s.registerErrs[1:]
		return nil, err
	}
	if req.GetJoinToken() != JoinToken {
		return nil, status.Error(codes.Unauthenticated, "invalid join token")
	}
	csr, err := parseCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	s.registrations++
	agentID := fmt.Sprintf("%s-%d", strings.ToLower(req.GetHostname()), s.registrations)
	certPEM, err := s.issueLocked(csr.PublicKey, agentID)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &flotillav1.RegisterResponse{
		AgentId:        agentID,
		CertificatePem: certPEM,
		CaBundlePem:    s.CA.PEM,
		Labels:         req.GetLabels(),
	}, nil
}

func parseCSR(data []byte) (*x509.CertificateRequest, error) {
	if block, _ := pem.Decode(data); block != nil {
		data = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(data)
	if err != nil {
		return nil, err
	}
	return csr, csr.CheckSignature()
}

// NextStream waits for the next stream that sent its hello.
func (s *Server) NextStream(ctx context.Context) (*Stream, error) {
	select {
	case st := <-s.streams:
		return st, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("fakecp: no stream: %w", ctx.Err())
	}
}

// agentIDFromPeer takes the agent ID from the verified client certificate,
// as the real control plane does, and returns it with the certificate.
func agentIDFromPeer(ctx context.Context) (string, *x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", nil, errors.New("no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		return "", nil, errors.New("no verified client certificate")
	}
	leaf := info.State.VerifiedChains[0][0]
	for _, u := range leaf.URIs {
		if id, ok := strings.CutPrefix(u.String(), SPIFFEPrefix); ok {
			return id, leaf, nil
		}
	}
	return "", nil, errors.New("client certificate names no agent")
}

// Stream is one agent stream, seen from the control plane.
type Stream struct {
	// AgentID is the identity from the client certificate.
	AgentID string
	// CertSerial is the serial number of the client certificate the
	// stream's connection was opened with.
	CertSerial *big.Int
	// Hello is the stream's first message.
	Hello *flotillav1.Hello
	// Received gets every later message from the agent.
	Received chan *flotillav1.ConnectRequest
	// ClosedByClient is closed when the agent closes its side (CloseSend).
	ClosedByClient chan struct{}

	send chan *flotillav1.ConnectResponse
	drop chan error
	done chan struct{}
}

// Send sends msg to the agent.
func (st *Stream) Send(ctx context.Context, msg *flotillav1.ConnectResponse) error {
	select {
	case st.send <- msg:
		return nil
	case <-st.done:
		return errors.New("fakecp: stream ended")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Drop ends the stream from the server side with err's status.
func (st *Stream) Drop(err error) {
	select {
	case st.drop <- err:
	case <-st.done:
	}
}

// Done is closed when the server's handler has returned.
func (st *Stream) Done() <-chan struct{} { return st.done }

// Connect implements AgentService.Connect: identity from the certificate, a
// hello first, then a welcome, then whatever the test sends.
func (s *Server) Connect(stream grpc.BidiStreamingServer[flotillav1.ConnectRequest, flotillav1.ConnectResponse]) error {
	ctx := stream.Context()
	agentID, cert, err := agentIDFromPeer(ctx)
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message must be a hello")
	}
	if hello.GetAgentId() != "" && hello.GetAgentId() != agentID {
		return status.Errorf(codes.PermissionDenied, "hello names agent %q but the certificate %q", hello.GetAgentId(), agentID)
	}
	s.mu.Lock()
	noWelcome := s.noWelcome
	s.mu.Unlock()
	if noWelcome {
		<-ctx.Done()
		return ctx.Err()
	}
	err = stream.Send(&flotillav1.ConnectResponse{Body: &flotillav1.ConnectResponse_Welcome{Welcome: &flotillav1.Welcome{
		AgentId: agentID, ServerVersion: "fake", ServerTime: timestamppb.Now(),
	}}})
	if err != nil {
		return err
	}

	s.mu.Lock()
	s.streamCount++
	s.mu.Unlock()
	st := &Stream{
		AgentID:        agentID,
		CertSerial:     cert.SerialNumber,
		Hello:          hello,
		Received:       make(chan *flotillav1.ConnectRequest, 64),
		ClosedByClient: make(chan struct{}),
		send:           make(chan *flotillav1.ConnectResponse),
		drop:           make(chan error),
		done:           make(chan struct{}),
	}
	defer close(st.done)
	select {
	case s.streams <- st:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.serve(stream, st)
}

func (s *Server) serve(stream grpc.BidiStreamingServer[flotillav1.ConnectRequest, flotillav1.ConnectResponse], st *Stream) error {
	ctx := stream.Context()
	recvErr := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case st.Received <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case msg := <-st.send:
			if err := stream.Send(msg); err != nil {
				return err
			}
		case err := <-st.drop:
			return err
		case err := <-recvErr:
			if !errors.Is(err, io.EOF) {
				return err
			}
			close(st.ClosedByClient)
			s.mu.Lock()
			hold := s.holdOnClose
			s.mu.Unlock()
			if !hold {
				return nil
			}
			recvErr = nil // keep serving until dropped or cancelled
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
