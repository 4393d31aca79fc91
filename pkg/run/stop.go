package run

import "time"

// Stop stops something in two steps: it calls graceful, and if graceful has
// not returned within deadline it calls hard, which must make graceful
// return (a gRPC server's Stop ends its GracefulStop, closing the
// connections that never end on their own). Stop returns once graceful
// has returned, and reports whether it had to stop hard.
func Stop(deadline time.Duration, graceful, hard func()) (forced bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		graceful()
	}()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	select {
	case <-done:
		return false
	case <-timer.C:
	}
	hard()
	<-done
	return true
}
