package backups

import (
	"testing"

	"go.uber.org/goleak"
)

// The scheduler and the recorder run on their callers' goroutines or end
// with their context: a test that leaves one running fails here.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
