// Package scenario holds one benchmark per figure of issue 7. Each starts
// the processes it measures (its own control plane on a fresh data
// directory, simulators, a real agent), measures, stops them and returns
// its figures; the command appends them to the results file.
package scenario
