package api

import (
	"testing"

	"go.uber.org/goleak"
)

// The services start no goroutine of their own, and the dispatcher's
// owner ends once its inbox is empty: a test that leaves one fails here.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
