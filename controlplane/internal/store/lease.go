package store

import (
	"errors"
	"fmt"
	"time"
)

// MinLeaseTTL is the shortest lease a store grants: expiries are kept to the
// millisecond or better by every driver.
const MinLeaseTTL = time.Millisecond

// ValidateLeaseRequest checks the arguments of AcquireLease and RenewLease,
// naming the field that is wrong.
func ValidateLeaseRequest(name, holder string, ttl time.Duration) error {
	switch {
	case name == "":
		return errors.New("lease name: required")
	case holder == "":
		return errors.New("lease holder: required")
	case ttl < MinLeaseTTL:
		return fmt.Errorf("lease ttl: %s is shorter than %s", ttl, MinLeaseTTL)
	}
	return nil
}

// ErrFenced is returned by a write made under a Fence that no longer holds:
// the lease expired or moved to another holder (its token changed). Nothing
// of the write is stored; the writer has lost the work and must stop
// driving it.
var ErrFenced = errors.New("lease lost: write refused (fenced)")

// Fence is the lease a write of one piece of work is made under (a fencing
// token, as Temporal's shard range IDs are): the store writes only while the
// lease named Name is held by Holder with Token and has not expired by the
// database's clock, checked in the write's own transaction; otherwise it
// returns ErrFenced. A nil *Fence writes unconditionally (one control plane
// on SQLite, where no other process can hold the work).
type Fence struct {
	Name   string
	Holder string
	Token  int64
}

// FenceOf returns the fence of a lease as acquired or renewed.
func FenceOf(l Lease) *Fence {
	return &Fence{Name: l.Name, Holder: l.Holder, Token: l.Token}
}
