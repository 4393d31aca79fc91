package fleet

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// heartbeatChanged compares containers field by field: a field added to
// ManagedContainer must be added there too, or its changes would wait for
// the persist interval.
func TestHeartbeatChangedCoversEveryContainerField(t *testing.T) {
	fields := (&flotillav1.ManagedContainer{}).ProtoReflect().Descriptor().Fields()
	if fields.Len() != 5 {
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
		c := base()
		m := c.ProtoReflect()
		m.Set(f, protoString(m.Get(f).String()+"-changed"))
		if !heartbeatChanged(hb(base()), hb(c)) {
			t.Errorf("a change of %s went unnoticed", f.Name())
		}
	}
}

func protoString(s string) protoreflect.Value { return protoreflect.ValueOfString(s) }
