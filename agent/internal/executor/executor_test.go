package executor

import (
	"testing"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

func TestProgressOrDiscard(t *testing.T) {
	var got []string
	record := Progress(func(p *flotillav1.CommandProgress) { got = append(got, p.GetMessage()) })
	tests := []struct {
		name string
		p    Progress
		want int // reports that reach record
	}{
		{"nil discards", nil, 0},
		{"set passes through", record, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			p := tt.p.OrDiscard()
			if p == nil {
				t.Fatal("OrDiscard returned nil")
			}
			p(&flotillav1.CommandProgress{Message: "pulling"})
			if len(got) != tt.want {
				t.Fatalf("%d reports recorded, want %d", len(got), tt.want)
			}
		})
	}
}
