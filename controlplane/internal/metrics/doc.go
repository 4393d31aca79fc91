// Package metrics builds the control plane's Prometheus metrics, one
// constructor a metric type, so that each package declares a metric in one
// line (name, help, labels) instead of repeating the client library's
// options structs. Metric names are part of Flotilla's interface with
// dashboards and alert rules; the README lists them.
package metrics
