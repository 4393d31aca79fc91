package logging

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Formats are the values of log.format.
const (
	FormatJSON    = "json"
	FormatConsole = "console"
)

// New returns a logger writing to stderr at level ("debug", "info", "warn",
// "error") in format FormatJSON or FormatConsole. Errors name the setting
// that is wrong (log.level, log.format).
//
// Both formats log every line: sampling would drop the line that explains
// an outage. JSON lines carry RFC 3339 times with nanoseconds and no stack
// traces (the error says what failed); console lines carry a stack trace
// on errors. Neither panics on DPanic.
func New(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	var cfg zap.Config
	switch format {
	case FormatJSON:
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		cfg.DisableStacktrace = true
	case FormatConsole:
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	default:
		return nil, fmt.Errorf("log.format: %q is not %s or %s", format, FormatJSON, FormatConsole)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Development = false // no panic on DPanic; stack traces on errors only
	cfg.Sampling = nil
	return cfg.Build()
}
