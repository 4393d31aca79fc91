package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// wireStream is the receiving half of an agent's Connect stream: Recv
// decodes the same encoded message each time, as gRPC's codec decodes each
// frame, until next says the stream is over.
type wireStream struct {
	grpc.ServerStream // unused by receive; nil
	wire              []byte
	next              func() bool
}

func (s *wireStream) Recv() (*flotillav1.ConnectRequest, error) {
	if !s.next() {
		return nil, io.EOF
	}
	msg := &flotillav1.ConnectRequest{}
	if err := proto.Unmarshal(s.wire, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func (s *wireStream) Send(*flotillav1.ConnectResponse) error { return nil }

func (s *wireStream) Context() context.Context { return context.Background() }

// benchHeartbeatWire is a typical heartbeat, encoded: host metrics with two
// disks, application health, one database and two managed containers.
func benchHeartbeatWire(b *testing.B) []byte {
	hb := &flotillav1.Heartbeat{
		Host: &flotillav1.HostMetrics{CpuPercent: 12.5, MemoryPercent: 40, Load1: 0.5,
			Disks: []*flotillav1.DiskUsage{{Path: "/", UsedPercent: 55}, {Path: "/data", UsedPercent: 70}}},
		App:       &flotillav1.AppHealth{Healthy: true, Status: "healthy", Url: "http://127.0.0.1:8080/healthz", Latency: durationpb.New(3 * time.Millisecond)},
		Databases: []*flotillav1.DatabaseStats{{Name: "app", Connections: 7}},
		Containers: []*flotillav1.ManagedContainer{
			{Name: "app", ContainerId: "3f4e5d6c7b8a", Image: "registry.example/app:v1", ImageId: "sha256:0123456789abcdef", State: "running"},
			{Name: "worker", ContainerId: "8a7b6c5d4e3f", Image: "registry.example/worker:v1", ImageId: "sha256:fedcba9876543210", State: "running"},
		},
	}
	wire, err := proto.Marshal(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Heartbeat{Heartbeat: hb}})
	if err != nil {
		b.Fatal(err)
	}
	return wire
}

// BenchmarkReceiveHeartbeat measures what the control plane does for each
// heartbeat on an agent's stream once gRPC has the frame: decoding it,
// validating it (validateHeartbeat) and recording it in the registry
// (Registry.Heartbeat), with 10,000 connected agents. serial is one
// stream; parallel is GOMAXPROCS streams at once, each its own agent.
func BenchmarkReceiveHeartbeat(b *testing.B) {
	const agents = 10000
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "flotilla.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	reg, err := fleet.New(fleet.Config{Store: st, Logger: zap.NewNop(), FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	disp, err := commands.NewDispatcher(commands.DispatcherConfig{Store: st, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	svc := &AgentService{cfg: AgentServiceConfig{Store: st, Registry: reg, Commands: disp}, log: zap.NewNop()}
	sessions := make([]*fleet.Session, agents)
	for i := range sessions {
		id := fmt.Sprintf("web-%05d", i)
		reg.Add(store.Agent{ID: id, Hostname: id, State: store.AgentDisconnected, RegisteredAt: time.Now()})
		if sessions[i], err = reg.Attach(id, &flotillav1.Hello{AgentId: id, Version: "v1.0.0", Hostname: id}, "10.0.0.1:40000"); err != nil {
			b.Fatal(err)
		}
	}
	wire := benchHeartbeatWire(b)
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/heartbeat")
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heartbeats/s")
	}

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		stream := &wireStream{wire: wire, next: func() bool { n++; return n <= b.N }}
		if err := svc.receive(stream, sessions[0]); !errors.Is(err, io.EOF) {
			b.Fatalf("receive = %v, want io.EOF at the end of the stream", err)
		}
		report(b)
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		next := make(chan *fleet.Session, agents)
		for _, s := range sessions {
			next <- s
		}
		b.RunParallel(func(pb *testing.PB) {
			sess := <-next
			if err := svc.receive(&wireStream{wire: wire, next: pb.Next}, sess); !errors.Is(err, io.EOF) {
				b.Errorf("receive = %v, want io.EOF at the end of the stream", err)
			}
		})
		report(b)
	})
}
