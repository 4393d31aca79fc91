// Package results keeps the benchmark results file: a markdown table to
// which every run appends one row per figure, with when, on which commit
// and on which machine it was measured.
package results
