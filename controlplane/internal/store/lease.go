package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
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

// FencedError is ErrFenced for one fence: the write made under Fence was
// refused, and Detail says what the lease is now. A write under several
// fences names the first that failed, so that the writer knows which piece
// of work it lost.
type FencedError struct {
	Fence  Fence
	Detail string // e.g. "now holder b, token 3"; may be empty
}

func (e *FencedError) Error() string {
	msg := fmt.Sprintf("store: lease %q (holder %s, token %d)", e.Fence.Name, e.Fence.Holder, e.Fence.Token)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg + ": " + ErrFenced.Error()
}

// Unwrap makes errors.Is(err, ErrFenced) hold.
func (e *FencedError) Unwrap() error { return ErrFenced }

// DistinctFences returns the fences found in fences (by host command ID)
// of hosts and of events' commands, once each, ordered by lease name: the
// order a driver checks them in, so that two writers lock the lease rows
// in one order.
func DistinctFences(hosts []HostCommand, events []CommandEvent, fences map[string]*Fence) []*Fence {
	if len(fences) == 0 {
		return nil
	}
	seen := make(map[Fence]bool)
	var out []*Fence
	add := func(id string) {
		if f := fences[id]; f != nil && !seen[*f] {
			seen[*f] = true
			out = append(out, f)
		}
	}
	for i := range hosts {
		add(hosts[i].ID)
	}
	for i := range events {
		add(events[i].CommandID)
	}
	slices.SortFunc(out, func(a, b *Fence) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Holder, b.Holder)
	})
	return out
}
