package server

import "flotilla.dev/controlplane/internal/store"

// Option adjusts how New builds a server.
type Option func(*options)

type options struct {
	wrapStore func(store.Store) store.Store
}

// WithStoreWrapper makes the server use wrap(store) instead of the store it
// opened; tests use it to make the store fail.
func WithStoreWrapper(wrap func(store.Store) store.Store) Option {
	return func(o *options) { o.wrapStore = wrap }
}
