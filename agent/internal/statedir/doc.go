// Package statedir keeps the agent's secrets private on disk: the state
// directory (private key, certificate, command journal) must be the agent
// user's alone, and so must the join token file.
//
// A directory or file that group or others can access is refused, never
// silently tightened: someone may already have read the key or the token,
// and the operator has to know that (and rotate the secret) rather than
// have the agent hide it. Whatever the agent creates gets the right mode
// from the start.
package statedir
