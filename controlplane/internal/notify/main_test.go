package notify

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"flotilla.dev/pkg/pgtest"
)

// cluster is the PostgreSQL server of the replica test, started on first
// use.
var cluster pgtest.Shared

// TestMain stops the shared cluster once the tests have run, and fails the
// run if a test left a goroutine behind (an attempt, a delivery loop).
func TestMain(m *testing.M) {
	code := m.Run()
	if err := cluster.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
