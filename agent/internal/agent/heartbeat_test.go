package agent

import (
	"context"
	"errors"
	"testing"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"
)

func TestHealthChangesAreLoggedOnce(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	src := &heartbeatSource{log: zap.New(core)}
	for _, healthy := range []bool{true, true, false, false, false, true} {
		src.logHealthChange(&flotillav1.AppHealth{Healthy: healthy, Error: "status 503"})
	}
	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Message)
	}
	want := []string{"application healthy", "application unhealthy", "application healthy"}
	if len(got) != len(want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("logged %q, want %q", got, want)
		}
	}
}

// resourceLister lists fixed containers and fills in the resources of
// those it knows, failing for the others.
type resourceLister struct {
	cs        []*flotillav1.ManagedContainer
	resources map[string]*flotillav1.ContainerResources
}

func (l *resourceLister) ManagedContainers(context.Context) ([]*flotillav1.ManagedContainer, error) {
	out := make([]*flotillav1.ManagedContainer, len(l.cs))
	for i, c := range l.cs {
		out[i] = proto.Clone(c).(*flotillav1.ManagedContainer)
	}
	return out, nil
}

func (l *resourceLister) ContainerResources(ctx context.Context, cs []*flotillav1.ManagedContainer) error {
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("resources read without a deadline")
	}
	var err error
	for _, c := range cs {
		if r, ok := l.resources[c.GetName()]; ok {
			c.Resources = r
		} else {
			err = errors.New("engine error for " + c.GetName())
		}
	}
	return err
}

func TestHeartbeatCarriesContainerResources(t *testing.T) {
	l := &resourceLister{
		cs:        []*flotillav1.ManagedContainer{{Name: "api", State: "running"}, {Name: "worker", State: "running"}},
		resources: map[string]*flotillav1.ContainerResources{"api": {MemoryWorkingSetBytes: 42 << 20, MemoryLimitBytes: 64 << 20}},
	}
	src := &heartbeatSource{log: zap.NewNop(), inventory: l}
	cs := src.containers(context.Background())
	if len(cs) != 2 {
		t.Fatalf("%d containers, want 2 (a failed reading keeps the container)", len(cs))
	}
	if got := cs[0].GetResources().GetMemoryWorkingSetBytes(); got != 42<<20 {
		t.Errorf("api working set %d, want %d", got, 42<<20)
	}
	if cs[1].GetResources() != nil {
		t.Errorf("worker, whose reading failed, carries resources %v", cs[1].GetResources())
	}
}
