// Package lease keeps a named lease of the store (store.LeaseStore) for one
// control-plane process: a Keeper acquires it, renews it at a twentieth of its
// TTL, and stops — returning an error so that the process's run group stops
// the work the lease guards — as soon as the lease is lost, or when it could
// not renew it for longer than the TTL minus a safety margin, measured on the
// local monotonic clock. The lease's expiry comes from the database's clock,
// which counts from a moment after the keeper sent its request, so a keeper
// that cannot reach the database gives up before its lease can expire and be
// taken elsewhere.
package lease
