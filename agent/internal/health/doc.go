// Package health checks the application's /health endpoint, whose JSON body is
// {"status", "timestamp", "database", "cache"}, and reports the result as an
// AppHealth for the heartbeat.
package health
