package commands

import (
	"testing"

	"go.uber.org/goleak"
)

// The dispatcher's owner goroutine ends once its inbox is empty: a test
// that leaves one running (or a watcher, or a fake agent) fails here.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
