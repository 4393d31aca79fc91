package limit

import (
	"testing"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

func count(n int32) *flotillav1.Limit {
	return &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: n}}
}

func percent(n int32) *flotillav1.Limit {
	return &flotillav1.Limit{Kind: &flotillav1.Limit_Percent{Percent: n}}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name  string
		limit *flotillav1.Limit
		n     int
		def   int
		want  int
	}{
		{"unset gives the default", nil, 7, 7, 7},
		{"unset max_errors gives no limit", nil, 7, 0, 0},
		{"empty limit gives the default", &flotillav1.Limit{}, 7, 3, 3},
		{"count", count(3), 10, 10, 3},
		{"count above the hosts", count(50), 4, 4, 50},
		{"50% of 4", percent(50), 4, 4, 2},
		{"50% of 3 rounds up", percent(50), 3, 3, 2},
		{"33% of 3 rounds up to one", percent(33), 3, 3, 1},
		{"1% of 3 is at least one", percent(1), 3, 3, 1},
		{"10% of 25", percent(10), 25, 25, 3},
		{"29% of 100 is exact", percent(29), 100, 100, 29},
		{"100% of 7", percent(100), 7, 7, 7},
		{"percent of no hosts is one", percent(50), 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Resolve(tt.limit, tt.n, tt.def); got != tt.want {
				t.Fatalf("Resolve = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		limit   *flotillav1.Limit
		wantSub string
		wantErr bool
	}{
		{nil, "", false},
		{count(1), "", false},
		{count(100000), "", false},
		{percent(1), "", false},
		{percent(100), "", false},
		{&flotillav1.Limit{}, "", true},
		{count(0), ".count", true},
		{count(-1), ".count", true},
		{percent(0), ".percent", true},
		{percent(101), ".percent", true},
		{percent(-5), ".percent", true},
	}
	for _, tt := range tests {
		sub, err := Check(tt.limit)
		if sub != tt.wantSub || (err != nil) != tt.wantErr {
			t.Errorf("Check(%v) = %q, %v; want %q and an error: %v", tt.limit, sub, err, tt.wantSub, tt.wantErr)
		}
	}
}
