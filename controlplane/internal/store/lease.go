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
