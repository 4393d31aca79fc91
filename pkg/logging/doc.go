// Package logging builds the zap logger of both programs: JSON for log
// shippers in production, console text for people in development.
package logging
