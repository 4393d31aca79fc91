package agent

import (
	"testing"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
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
