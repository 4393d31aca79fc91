package store

import "time"

// Live reports whether t is neither expired nor revoked at now. An agent
// registered with a live token can still be found by its registration key
// (RegisteredWithKey), even when the token is used up.
func (t JoinToken) Live(now time.Time) bool {
	return t.RevokedAt.IsZero() && now.Before(t.ExpiresAt)
}

// Admits reports whether t can admit one more agent at now: it is live and
// not used up.
func (t JoinToken) Admits(now time.Time) bool {
	return t.Live(now) && t.Uses < t.MaxUses
}

// Active reports whether t authenticates at now: not revoked, and not
// expired when it has an expiry.
func (t APIToken) Active(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}
