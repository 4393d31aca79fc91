// Package logging builds the agent's zap logger.
package logging

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logger writing to stderr at level ("debug", "info", "warn",
// "error") in format "json" (for log shippers) or "console" (for people).
func New(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("logging: %w", err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false // no panics on DPanic, no stack on warnings
	default:
		return nil, fmt.Errorf("logging: unknown format %q (want json or console)", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	// A host agent logs to the journal: sampling would drop the line that
	// explains an outage, and stack traces belong to errors only.
	cfg.Sampling = nil
	cfg.DisableStacktrace = true
	return cfg.Build()
}
