package fleet

import (
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// heartbeatChanged compares containers field by field: a field added to
// ManagedContainer must be added there too, or its changes would wait for
// the persist interval.
func TestHeartbeatChangedCoversEveryContainerField(t *testing.T) {
	fields := (&flotillav1.ManagedContainer{}).ProtoReflect().Descriptor().Fields()
	if fields.Len() != 7 {
		t.Fatalf("ManagedContainer has %d fields; update heartbeatChanged and this test", fields.Len())
	}
	base := func() *flotillav1.ManagedContainer {
		return &flotillav1.ManagedContainer{Name: "web", ContainerId: "c1", Image: "app:1", ImageId: "sha256:1", State: "running"}
	}
	hb := func(c *flotillav1.ManagedContainer) *flotillav1.Heartbeat {
		return &flotillav1.Heartbeat{Containers: []*flotillav1.ManagedContainer{c}}
	}
	if heartbeatChanged(hb(base()), hb(base())) {
		t.Error("identical containers reported as changed")
	}
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Name() == "host_ports" {
			moved := base()
			moved.HostPorts = []int32{8081}
			if !heartbeatChanged(hb(base()), hb(moved)) {
				t.Error("a change of host_ports went unnoticed")
			}
			continue
		}
		if f.Kind() != protoreflect.StringKind {
			continue // the resources: TestHeartbeatChangedOnContainerEvents
		}
		c := base()
		m := c.ProtoReflect()
		m.Set(f, protoString(m.Get(f).String()+"-changed"))
		if !heartbeatChanged(hb(base()), hb(c)) {
			t.Errorf("a change of %s went unnoticed", f.Name())
		}
	}
}

func protoString(s string) protoreflect.Value { return protoreflect.ValueOfString(s) }

// A restart, an OOM kill or a working set in another twentieth of the
// limit (64 MiB steps without one) is written at once; the CPU and memory
// figures, new in every heartbeat, are not.
func TestHeartbeatChangedOnContainerEvents(t *testing.T) {
	fields := (&flotillav1.ContainerResources{}).ProtoReflect().Descriptor().Fields()
	if fields.Len() != 9 {
		t.Fatalf("ContainerResources has %d fields; update resourceEventsChanged and this test", fields.Len())
	}
	started := timestamppb.New(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	base := func() *flotillav1.ContainerResources {
		return &flotillav1.ContainerResources{CpuPercent: 1, MemoryWorkingSetBytes: 10, MemoryUsageBytes: 20, MemoryLimitBytes: 1000,
			RestartCount: 1, OomKills: 1, StartedAt: started}
	}
	hb := func(r *flotillav1.ContainerResources) *flotillav1.Heartbeat {
		return &flotillav1.Heartbeat{Containers: []*flotillav1.ManagedContainer{{Name: "web", State: "running", Resources: r}}}
	}
	for name, tc := range map[string]struct {
		change  func(*flotillav1.ContainerResources)
		written bool
	}{
		"cpu":                               {func(r *flotillav1.ContainerResources) { r.CpuPercent = 50 }, false},
		"working set within its twentieth":  {func(r *flotillav1.ContainerResources) { r.MemoryWorkingSetBytes = 49 }, false},
		"working set to the next twentieth": {func(r *flotillav1.ContainerResources) { r.MemoryWorkingSetBytes = 50 }, true},
		"working set past the limit":        {func(r *flotillav1.ContainerResources) { r.MemoryWorkingSetBytes = 2000 }, true},
		"limit raised, same twentieth":      {func(r *flotillav1.ContainerResources) { r.MemoryLimitBytes = 1040 }, false},
		"limit removed, within 64 MiB":      {func(r *flotillav1.ContainerResources) { r.MemoryLimitBytes = 0 }, false},
		"usage":                             {func(r *flotillav1.ContainerResources) { r.MemoryUsageBytes = 99 }, false},
		"restart":                           {func(r *flotillav1.ContainerResources) { r.RestartCount = 2 }, true},
		"oom kill":                          {func(r *flotillav1.ContainerResources) { r.OomKills = 2; r.OomKilled = true }, true},
		"new run": {func(r *flotillav1.ContainerResources) {
			r.StartedAt = timestamppb.New(started.AsTime().Add(time.Minute))
		}, true},
		"first reading": {func(r *flotillav1.ContainerResources) { *r = flotillav1.ContainerResources{} }, true},
	} {
		r := base()
		tc.change(r)
		if got := heartbeatChanged(hb(base()), hb(r)); got != tc.written {
			t.Errorf("%s: changed %v, want %v", name, got, tc.written)
		}
	}
}
