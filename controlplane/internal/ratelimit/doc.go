// Package ratelimit is an in-memory token-bucket limiter keyed by a string
// (a source address). The number of keys is bounded: when the table is
// full, the least recently used key is forgotten, so a caller cycling
// through addresses costs memory it cannot grow.
package ratelimit
