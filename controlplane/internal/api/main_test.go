package api_test

import (
	"testing"

	"flotilla.dev/controlplane/internal/server/servertest"
)

// TestMain runs the tests on the store FLOTILLA_TEST_STORE selects, stops
// the PostgreSQL cluster they may have started and fails the run if a test
// left a goroutine behind.
func TestMain(m *testing.M) { servertest.Main(m) }
