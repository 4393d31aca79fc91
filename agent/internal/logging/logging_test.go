package logging

import (
	"testing"

	"go.uber.org/zap/zapcore"
)

func TestNew(t *testing.T) {
	tests := []struct {
		level, format string
		wantErr       bool
	}{
		{"info", "json", false},
		{"debug", "console", false},
		{"warn", "json", false},
		{"loud", "json", true},
		{"info", "xml", true},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			log, err := New(tt.level, tt.format)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New(%q, %q) error = %v, wantErr %v", tt.level, tt.format, err, tt.wantErr)
			}
			if err == nil && !log.Core().Enabled(mustLevel(t, tt.level)) {
				t.Errorf("level %s not enabled", tt.level)
			}
		})
	}
}

func mustLevel(t *testing.T, s string) zapcore.Level {
	t.Helper()
	l, err := zapcore.ParseLevel(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
