package logging

import (
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
)

func TestNew(t *testing.T) {
	tests := []struct {
		level, format string
		wantErr       string // prefix of the error; "" when valid
	}{
		{"info", "json", ""},
		{"debug", "console", ""},
		{"warn", "json", ""},
		{"error", "console", ""},
		{"loud", "json", "log.level: "},
		{"info", "xml", `log.format: "xml" is not json or console`},
		{"info", "", "log.format: "},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			log, err := New(tt.level, tt.format)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("New(%q, %q) = %v, want an error starting %q", tt.level, tt.format, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q, %q): %v", tt.level, tt.format, err)
			}
			lvl, _ := zapcore.ParseLevel(tt.level)
			if !log.Core().Enabled(lvl) {
				t.Errorf("level %s not enabled", tt.level)
			}
			if lvl > zapcore.DebugLevel && log.Core().Enabled(lvl-1) {
				t.Errorf("level %s enabled below %s", lvl-1, lvl)
			}
		})
	}
}

// Neither format panics on DPanic: a logged bug must not take the
// program down.
func TestNoPanicOnDPanic(t *testing.T) {
	for _, format := range []string{FormatJSON, FormatConsole} {
		log, err := New("error", format)
		if err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if v := recover(); v != nil {
					t.Errorf("%s: DPanic panicked: %v", format, v)
				}
			}()
			log.DPanic("a bug the test logs on purpose")
		}()
	}
}
