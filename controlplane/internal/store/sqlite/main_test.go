package sqlite

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind, such as a
// connection pool that Close did not release.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
