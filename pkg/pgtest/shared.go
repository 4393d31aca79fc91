package pgtest

import (
	"errors"
	"sync"
	"testing"
)

// Shared is one cluster for every test of a package: started by the first
// test that asks for it, stopped by TestMain once the tests have run, so
// that each test costs a CREATE DATABASE rather than an initdb.
//
//	var cluster pgtest.Shared
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		cluster.Stop()
//		os.Exit(code)
//	}
type Shared struct {
	// Options are used when the cluster starts.
	Options Options

	once sync.Once
	p    *Postgres
	err  error
}

// Get returns the cluster, starting it on first use. A missing dependency
// skips t (fails it under FLOTILLA_E2E=1), every time it is asked for.
func (s *Shared) Get(t testing.TB) *Postgres {
	t.Helper()
	s.once.Do(func() { s.p, s.err = Launch(s.Options) })
	if errors.Is(s.err, ErrMissing) {
		Require(t, "%v", s.err)
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.p
}

// Stop stops the cluster if it was started. It returns the error that
// stopping it met.
func (s *Shared) Stop() error {
	s.once.Do(func() { s.err = errors.New("pgtest: shared cluster stopped before use") })
	if s.p == nil {
		return nil
	}
	return s.p.Stop()
}
