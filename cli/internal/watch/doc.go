// Package watch follows a rollout or a fleet command to its end for the
// flotilla command. A watch stream that drops (a control plane restarted,
// a load balancer that cut the connection) is opened again, on whichever
// replica answers, and the events already seen are skipped by their
// sequence: a drop is never reported as a failed deploy. The end is taken
// from the server's final state (GetRollout, the command's last snapshot),
// never from the first state seen.
//
// The views print what is followed: in a terminal a live view redrawn in
// place (batch k of n, each host's step and how long it has been in it, the
// health gate's countdown); elsewhere one plain line per event.
package watch
