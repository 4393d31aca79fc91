package run

import (
	"testing"
	"time"
)

func TestStop(t *testing.T) {
	tests := []struct {
		name       string
		stopsAlone bool // graceful returns without hard
		wantForced bool
	}{
		{"graceful in time", true, false},
		{"hard after the deadline", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kill := make(chan struct{})
			hardCalls := 0
			graceful := func() {
				if !tt.stopsAlone {
					<-kill // like GracefulStop with a stream that never ends
				}
			}
			hard := func() { hardCalls++; close(kill) }
			deadline := time.Hour
			if !tt.stopsAlone {
				deadline = time.Millisecond
			}
			if forced := Stop(deadline, graceful, hard); forced != tt.wantForced {
				t.Errorf("Stop forced = %v, want %v", forced, tt.wantForced)
			}
			if want := map[bool]int{false: 0, true: 1}[tt.wantForced]; hardCalls != want {
				t.Errorf("hard called %d times, want %d", hardCalls, want)
			}
		})
	}
}
