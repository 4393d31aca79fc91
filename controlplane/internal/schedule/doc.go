// Package schedule reads five-field cron expressions in an IANA time zone
// and finds their slots. Slots are computed on the wall clock of the zone
// and only then turned into instants, so daylight-saving changes behave the
// way an operator reading the expression expects: a wall time that a change
// skips (02:30 on the night clocks go forward) runs as late as the gap is
// long (03:30), and a wall time that a change repeats (01:30 on the night
// they go back) runs once, at its first occurrence.
package schedule
