// Package promtext reads chosen samples from a Prometheus text exposition
// as it streams in. The control plane's /metrics holds series per agent,
// so with a large fleet it runs to megabytes: reading it line by line and
// keeping only the wanted series keeps the benchmark's own memory flat.
package promtext
