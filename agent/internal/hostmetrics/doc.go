// Package hostmetrics reads the host's CPU, memory, disk, load and uptime for
// the heartbeat.
package hostmetrics
