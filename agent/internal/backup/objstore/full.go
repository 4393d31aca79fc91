package objstore

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// FullError is a write that failed because the filesystem holding Where is
// full (ENOSPC).
type FullError struct {
	Where string
	Err   error
}

func (e *FullError) Error() string {
	return fmt.Sprintf("%s is on a full filesystem (ENOSPC, no space left on device): free space there or prune older backups, then retry: %v", e.Where, e.Err)
}

func (e *FullError) Unwrap() error { return e.Err }

// noSpaceText is how PostgreSQL's tools (pg_basebackup, pg_dump) report
// ENOSPC in the messages the agent passes on.
const noSpaceText = "No space left on device"

// Full names a full filesystem in err: a *FullError for where when err is
// ENOSPC (or a PostgreSQL tool's message saying so) and not already one;
// err unchanged otherwise.
func Full(err error, where string) error {
	var full *FullError
	if err == nil || errors.As(err, &full) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), noSpaceText) {
		return &FullError{Where: where, Err: err}
	}
	return err
}
