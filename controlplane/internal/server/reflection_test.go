package server_test

import (
	"context"
	"strings"
	"testing"

	v1reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"flotilla.dev/controlplane/internal/server/servertest"
)

// Reflection serves the API's descriptors with their comments (what
// grpcurl describe prints), and still knows the libraries' services.
func TestReflectionServesComments(t *testing.T) {
	cp := servertest.Start(t)
	conn := cp.Dial(cp.ClientTLS())
	stream, err := v1reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	tests := []struct {
		symbol  string
		comment string // "" when only the file is wanted
	}{
		{"flotilla.v1.RolloutStrategy", "RolloutStrategy says how a rollout moves"},
		{"flotilla.v1.FleetService", ""},
		{"grpc.health.v1.Health", ""},
	}
	for _, tt := range tests {
		t.Run(tt.symbol, func(t *testing.T) {
			req := &v1reflectionpb.ServerReflectionRequest{
				MessageRequest: &v1reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: tt.symbol},
			}
			if err := stream.Send(req); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			files := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
			if len(files) == 0 {
				t.Fatalf("no file for %s: %v", tt.symbol, resp.GetErrorResponse())
			}
			if tt.comment == "" {
				return
			}
			var fd descriptorpb.FileDescriptorProto
			if err := proto.Unmarshal(files[0], &fd); err != nil {
				t.Fatal(err)
			}
			for _, loc := range fd.GetSourceCodeInfo().GetLocation() {
				if strings.Contains(loc.GetLeadingComments(), tt.comment) {
					return
				}
			}
			t.Errorf("%s: no comment %q in %s", tt.symbol, tt.comment, fd.GetName())
		})
	}
}
