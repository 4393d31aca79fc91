package commands

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"flotilla.dev/controlplane/internal/fault"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
)

// FuzzValidateSpec feeds ValidateSpec the wire bytes of a command spec: it
// must never panic, must refuse with InvalidArgument only, and must name a
// kind for every spec it accepts. Seeds: below and testdata/fuzz/FuzzValidateSpec/.
func FuzzValidateSpec(f *testing.F) {
	for _, s := range []*flotillav1.CommandSpec{
		pull("registry.internal:5000/shop/web:v2"),
		pull("registry.internal:5000/shop/web@" + digest),
		restart("web", "registry.internal:5000/shop/web:v2", durationpb.New(10*time.Second)),
		backup("shop"),
		drain("shop", "10.0.1.5:8080"),
		undrain("shop", "10.0.1.5:8080"),
		{},
	} {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		spec := new(flotillav1.CommandSpec)
		if proto.Unmarshal(b, spec) != nil {
			return
		}
		err := ValidateSpec("spec", spec)
		if err != nil {
			if !errors.Is(err, fault.ErrInvalid) {
				t.Fatalf("refused with %v, want InvalidArgument", err)
			}
			return
		}
		if command.Kind(spec) == "" {
			t.Fatalf("accepted a spec without a kind: %v", spec)
		}
		if DefaultTimeout(command.Kind(spec)) <= 0 {
			t.Fatalf("no default timeout for kind %q", command.Kind(spec))
		}
	})
}
