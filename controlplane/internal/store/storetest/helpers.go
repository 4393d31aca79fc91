package storetest

import (
	"context"
	"crypto/sha256"
	"reflect"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// t0 has nanoseconds so that any loss of precision shows.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

func hashOf(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// newJoinToken returns a token valid at t0 whose secret is "secret-"+id.
func newJoinToken(id string, maxUses int) store.JoinToken {
	return store.JoinToken{
		ID:          id,
		Hash:        hashOf("secret-" + id),
		Description: "test token " + id,
		Labels:      map[string]string{"env": "test"},
		MaxUses:     maxUses,
		CreatedAt:   t0.Add(-time.Hour),
		ExpiresAt:   t0.Add(time.Hour),
	}
}

func mustCreateJoinToken(tb testing.TB, s store.Store, t store.JoinToken) {
	tb.Helper()
	if err := s.CreateJoinToken(context.Background(), t); err != nil {
		tb.Fatalf("CreateJoinToken(%q): %v", t.ID, err)
	}
}

// mustRegisterAgent stores a through its own single-use join token and
// returns the agent as RegisterAgent returned it.
func mustRegisterAgent(tb testing.TB, s store.Store, a store.Agent) store.Agent {
	tb.Helper()
	tok := newJoinToken("tok-"+a.ID, 1)
	mustCreateJoinToken(tb, s, tok)
	got, err := s.RegisterAgent(context.Background(), tok.Hash, t0, func(store.JoinToken) (store.Agent, error) {
		return a, nil
	})
	if err != nil {
		tb.Fatalf("RegisterAgent(%q): %v", a.ID, err)
	}
	return got
}

func mustGetAgent(tb testing.TB, s store.Store, id string) store.Agent {
	tb.Helper()
	a, err := s.GetAgent(context.Background(), id)
	if err != nil {
		tb.Fatalf("GetAgent(%q): %v", id, err)
	}
	return a
}

func mustGetJoinToken(tb testing.TB, s store.Store, id string) store.JoinToken {
	tb.Helper()
	t, err := s.GetJoinToken(context.Background(), id)
	if err != nil {
		tb.Fatalf("GetJoinToken(%q): %v", id, err)
	}
	return t
}

// utc is what the store gives back for t: the same instant in UTC without a
// monotonic reading, and the zero time for the zero time.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Round(0).UTC()
}

// normalizeTimes replaces every time.Time field of the struct *p with utc
// of itself, so that expected values compare with reflect.DeepEqual.
func normalizeTimes(p any) {
	v := reflect.ValueOf(p).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Type() == reflect.TypeFor[time.Time]() {
			f.Set(reflect.ValueOf(utc(f.Interface().(time.Time))))
		}
	}
}

// assertEqual fails unless got deep-equals want once want's times are
// normalized as the store returns them. An expected store.Agent whose
// StatusSeq is 0 takes got's: the store sets it, and the tests of the
// sequence check it themselves. A host command's ChangeSeq, set by the
// store, must be positive; it is compared only when want has one.
func assertEqual[T any](tb testing.TB, got, want T) {
	tb.Helper()
	normalizeTimes(&want)
	if w, ok := any(&want).(*store.Agent); ok && w.StatusSeq == 0 {
		w.StatusSeq = any(got).(store.Agent).StatusSeq
	}
	if h, ok := any(&got).(*store.HostCommand); ok {
		if h.ChangeSeq <= 0 {
			tb.Errorf("host command %s read back with change seq %d, want > 0", h.ID, h.ChangeSeq)
		}
		if any(&want).(*store.HostCommand).ChangeSeq == 0 {
			h.ChangeSeq = 0
		}
	}
	if !reflect.DeepEqual(got, want) {
		tb.Errorf("mismatch:\n got: %#v\nwant: %#v", got, want)
	}
}
