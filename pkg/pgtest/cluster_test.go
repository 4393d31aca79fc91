package pgtest

import (
	"context"
	"testing"
)

// TestHaltResume halts a cluster, checks that it refuses connections and
// that a second Halt is an error, resumes it on the same port and checks
// that the data written before the halt is still there.
func TestHaltResume(t *testing.T) {
	p := Start(t)
	db := p.CreateDatabase(t)
	p.Exec(t, db, "CREATE TABLE kept (v int)", "INSERT INTO kept VALUES (42)")
	port := p.Port

	if err := p.Resume(); err == nil {
		t.Fatal("Resume of a running server succeeded")
	}
	if err := p.Halt(); err != nil {
		t.Fatal(err)
	}
	if conn, err := p.Dial(context.Background(), db); err == nil {
		_ = conn.Close(context.Background())
		t.Fatal("a halted server accepted a connection")
	}
	if err := p.Halt(); err == nil {
		t.Fatal("Halt of a halted server succeeded")
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if p.Port != port {
		t.Errorf("port %d after Resume, want %d", p.Port, port)
	}
	if got := p.QueryInt(t, db, "SELECT v FROM kept"); got != 42 {
		t.Errorf("after Resume: %d, want 42", got)
	}
}
