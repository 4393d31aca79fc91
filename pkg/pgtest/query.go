package pgtest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Connect connects to dbname as the superuser; the connection is closed when
// t ends.
func (p *Postgres) Connect(t testing.TB, dbname string) *pgx.Conn {
	t.Helper()
	conn, err := p.Dial(context.Background(), dbname)
	if err != nil {
		t.Fatalf("connect to %s: %v", dbname, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// Exec runs statements on dbname as the superuser.
func (p *Postgres) Exec(t testing.TB, dbname string, statements ...string) {
	t.Helper()
	conn, err := p.Dial(context.Background(), dbname)
	if err != nil {
		t.Fatalf("connect to %s: %v", dbname, err)
	}
	defer conn.Close(context.Background())
	for _, s := range statements {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := conn.Exec(ctx, s)
		cancel()
		if err != nil {
			t.Fatalf("%s on %s: %v", s, dbname, err)
		}
	}
}

// QueryInt runs a query that returns one integer, as the superuser.
func (p *Postgres) QueryInt(t testing.TB, dbname, query string) int64 {
	t.Helper()
	var n int64
	p.queryRow(t, dbname, query, &n)
	return n
}

// QueryString runs a query that returns one text value, as the superuser.
func (p *Postgres) QueryString(t testing.TB, dbname, query string) string {
	t.Helper()
	var s string
	p.queryRow(t, dbname, query, &s)
	return s
}

func (p *Postgres) queryRow(t testing.TB, dbname, query string, dst any) {
	t.Helper()
	conn, err := p.Dial(context.Background(), dbname)
	if err != nil {
		t.Fatalf("connect to %s: %v", dbname, err)
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.QueryRow(ctx, query).Scan(dst); err != nil {
		t.Fatalf("%s on %s: %v", query, dbname, err)
	}
}

// databaseSeq numbers the databases CreateDatabase makes.
var databaseSeq atomic.Int64

// CreateDatabase creates an empty database with a name of its own, dropped
// when t ends, and returns its name.
func (p *Postgres) CreateDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", databaseSeq.Add(1))
	p.Exec(t, "postgres", "CREATE DATABASE "+name)
	t.Cleanup(func() {
		// FORCE: a test that failed may have left connections open.
		p.Exec(t, "postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return name
}
