package sqlite

import (
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"

	"flotilla.dev/controlplane/internal/store"
)

func TestListQuery(t *testing.T) {
	tests := []struct {
		name      string
		where     []string
		args      []any
		limit     int
		wantQuery string
		wantArgs  []any
	}{
		{"all", nil, nil, 0, "SELECT x FROM t ORDER BY id", nil},
		{"conditions", []string{"a = ?", "b > ?"}, []any{1, 2}, 0, "SELECT x FROM t WHERE a = ? AND b > ? ORDER BY id", []any{1, 2}},
		{"limit", []string{"a = ?"}, []any{1}, 5, "SELECT x FROM t WHERE a = ? ORDER BY id LIMIT ?", []any{1, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, args := listQuery("SELECT x FROM t", tt.where, tt.args, "id", tt.limit)
			if q != tt.wantQuery || !slices.Equal(args, tt.wantArgs) {
				t.Errorf("listQuery = %q %v, want %q %v", q, args, tt.wantQuery, tt.wantArgs)
			}
		})
	}
}

func TestInList(t *testing.T) {
	cond, args := inList("state", []int32{3, 4}, []any{"x"})
	if cond != "state IN (?, ?)" || !slices.Equal(args, []any{"x", int32(3), int32(4)}) {
		t.Errorf("inList = %q %v", cond, args)
	}
}

func TestFound(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		err     error
		want    int
		wantIs  error
		wantMsg string
	}{
		{"row", nil, 7, nil, ""},
		{"no row", sql.ErrNoRows, 0, store.ErrNotFound, `store: get thing "t-1": `},
		{"failure", boom, 0, boom, `store: get thing "t-1": boom`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := found(7, tt.err, "get thing", "t-1")
			if got != tt.want || !errors.Is(err, tt.wantIs) || (err != nil) != (tt.wantIs != nil) {
				t.Fatalf("found = %v, %v; want %v, an error wrapping %v", got, err, tt.want, tt.wantIs)
			}
			if err != nil && !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Errorf("error %q, want it to start %q", err, tt.wantMsg)
			}
		})
	}
}
