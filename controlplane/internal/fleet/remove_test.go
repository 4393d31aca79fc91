package fleet_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/selector"
)

func TestRemoveClosesStreamAndForgetsAgent(t *testing.T) {
	st := openStore(t)
	clk := newClock(t0)
	r := newRegistry(t, st, clk)
	register(t, st, r, "a-1", t0, nil, nil)
	register(t, st, r, "a-2", t0, nil, nil)
	register(t, st, r, "a-3", t0, nil, nil)
	sess, err := r.Attach("a-2", helloMsg("a-2", nil), "10.0.0.2:1")
	if err != nil {
		t.Fatal(err)
	}
	reason := &fleet.DeregisteredError{Message: "agent a-2 was deregistered"}
	if !r.Remove("a-2", reason) {
		t.Fatal("Remove reported the agent unknown")
	}
	select {
	case <-sess.Done():
	default:
		t.Fatal("the stream's session is still open")
	}
	var de *fleet.DeregisteredError
	if !errors.As(sess.Err(), &de) {
		t.Fatalf("session ended with %v, want the deregistration", sess.Err())
	}
	if _, ok := r.Get("a-2"); ok {
		t.Fatal("removed agent still listed")
	}
	page, _, total := r.List(fleet.Query{Selector: selector.Everything(), Limit: 10})
	if total != 2 || page[0].Record.ID != "a-1" || page[1].Record.ID != "a-3" {
		t.Fatalf("List after Remove = %d agents", total)
	}
	if _, err := r.Attach("a-2", helloMsg("a-2", nil), "10.0.0.2:1"); !errors.Is(err, fleet.ErrUnknownAgent) {
		t.Fatalf("Attach after Remove = %v, want ErrUnknownAgent", err)
	}
	if r.Remove("a-2", reason) {
		t.Fatal("second Remove reported the agent known")
	}
	// Detaching the closed session later is harmless.
	r.Detach(sess, "stream ended")
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A registry loaded from the store skips deregistered agents.
	if _, err := st.DeregisterAgent(context.Background(), "a-2", t0, "gone"); err != nil {
		t.Fatal(err)
	}
	r2 := newRegistry(t, st, clk)
	if _, ok := r2.Get("a-2"); ok {
		t.Fatal("a deregistered agent was loaded")
	}
	if _, ok := r2.Get("a-1"); !ok {
		t.Fatal("a registered agent was not loaded")
	}
}

func TestSetCertificate(t *testing.T) {
	st := openStore(t)
	r := newRegistry(t, st, newClock(t0))
	register(t, st, r, "a-1", t0, nil, nil)
	r.SetCertificate("a-1", "abc", t0.Add(time.Hour))
	r.SetCertificate("unknown", "abc", t0) // ignored
	a, _ := r.Get("a-1")
	if a.Record.CertSerial != "abc" || !a.Record.CertNotAfter.Equal(t0.Add(time.Hour)) {
		t.Fatalf("record = %+v", a.Record)
	}
}
