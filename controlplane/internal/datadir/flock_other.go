//go:build !unix

package datadir

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("lock held")

// tryLock refuses: without flock(2) this platform cannot guarantee that a
// single control plane drives the store.
func tryLock(*os.File) error {
	return errors.New("data directory locking needs flock(2), which this platform lacks")
}
