// Package limit resolves and checks a Limit: a number of hosts given as a
// count or as a percentage of the hosts concerned (a fleet command's
// max_concurrency and max_errors, a rollout's max_failures).
package limit
