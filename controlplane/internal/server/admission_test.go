package server

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRegistrationAdmissionShedsBeyondTheLimit(t *testing.T) {
	a := newRegistrationAdmission(2, prometheus.NewRegistry(), zaptest.NewLogger(t))
	intercept := a.UnaryServerInterceptor()
	register := &grpc.UnaryServerInfo{FullMethod: registerMethod}
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	blocking := func(context.Context, any) (any, error) {
		started <- struct{}{}
		<-release
		return "ok", nil
	}
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := intercept(context.Background(), nil, register, blocking)
			done <- err
		}()
	}
	<-started
	<-started

	// A third registration while two are in progress is refused at once,
	// with a retry delay, and counted.
	_, err := intercept(context.Background(), nil, register, func(context.Context, any) (any, error) {
		t.Error("a registration over the limit reached the handler")
		return nil, nil
	})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("third registration: %v, want RESOURCE_EXHAUSTED", err)
	}
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("refusal details %v, want a RetryInfo with a delay", st.Details())
	}
	if got := testutil.ToFloat64(a.refused); got != 1 {
		t.Errorf("shed counter = %v, want 1", got)
	}
	// Other calls are never held back.
	if _, err := intercept(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/flotilla.v1.FleetService/ListAgents"},
		func(context.Context, any) (any, error) { return "ok", nil }); err != nil {
		t.Errorf("ListAgents while registrations are at the limit: %v", err)
	}

	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("admitted registration: %v", err)
		}
	}
	// Once they finish, registrations are admitted again.
	if _, err := intercept(context.Background(), nil, register, func(context.Context, any) (any, error) { return "ok", nil }); err != nil {
		t.Errorf("registration after the others finished: %v", err)
	}
}
