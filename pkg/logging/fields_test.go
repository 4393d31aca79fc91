package logging

import (
	"testing"

	"go.uber.org/zap"
)

// The constructors write the keys the constants name, so a query written
// against the constants finds every line.
func TestFieldKeys(t *testing.T) {
	tests := []struct {
		field zap.Field
		key   string
	}{
		{AgentID("a"), "agent_id"},
		{CommandID("c"), "command_id"},
		{RolloutID("r"), "rollout_id"},
		{Service("s"), "service"},
		{Hostname("h"), "hostname"},
		{Principal("token:x"), "principal"},
		{RequestID("q"), "request_id"},
	}
	for _, tt := range tests {
		if tt.field.Key != tt.key {
			t.Errorf("field key %q, want %q", tt.field.Key, tt.key)
		}
		if tt.field.String == "" {
			t.Errorf("%s: value lost", tt.key)
		}
	}
}
