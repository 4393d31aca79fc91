// Package analysis measures a rollout's Prometheus analysis queries: it
// renders each query's template with the rollout's values (escaped for
// PromQL strings), runs it against Prometheus (client_golang's
// api/prometheus/v1), and turns the value into a verdict: PASS, FAIL or
// INCONCLUSIVE. No data is never a pass: a missing series, NaN, too few
// requests or an unreachable Prometheus are inconclusive. The rollout
// engine decides what the verdicts do (see docs/analysis.md).
package analysis
