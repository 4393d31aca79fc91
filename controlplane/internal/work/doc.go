// Package work drives pieces of work (active rollouts, fleet commands) across
// several control-plane replicas on one database, each piece by exactly one
// replica at a time: the holder of the piece's lease, "<kind>/<id>".
//
// A Claimer lists the candidate pieces every ClaimInterval and tries to take
// the lease of each one it does not drive yet, without waiting when another
// replica holds it. For every lease it takes it starts the piece with a
// context of its own, renews the lease (a lease.Keeper: every TTL/20, and it
// steps down on its own, cancelling the piece's context, when it could not
// renew within TTL minus a margin on the local monotonic clock, before the
// lease can expire and be taken elsewhere), and releases the lease when the
// piece returns. Every write of a piece carries its store.Fence, which the
// store checks in the write's transaction: a replica that lost the lease
// (paused, cut off from the database) cannot write another step.
package work
