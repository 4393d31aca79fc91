package backup

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (a child
// process's I/O copier, a pgx connection).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
