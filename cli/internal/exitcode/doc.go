// Package exitcode is the flotilla command's contract with scripts: the
// process exit codes, and how each is chosen from the server's final state
// of a rollout or a fleet command, or from the error a call ended with.
//
// The code of a rollout comes from its final state as the server reports it,
// never from a state seen on the way: a rollout is success (0) only once the
// server says SUCCEEDED, which is when every planned host runs the new image.
// A state this version does not know (a newer server's: a bake, an
// analysis) is never success: it maps to Failed when final, and keeps the
// watch going while not final, so new steps slot in without a release being
// reported live too early.
package exitcode
