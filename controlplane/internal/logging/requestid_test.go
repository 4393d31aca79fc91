package logging

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
)

func TestValidRequestID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"req-1", true},
		{"0af7651916cd43dd8448eb211c80319c", true},
		{strings.Repeat("a", MaxRequestIDLen), true},
		{strings.Repeat("a", MaxRequestIDLen+1), false},
		{"", false},
		{"two words", false},
		{"line\nbreak", false},
		{"tab\t", false},
		{"del\x7f", false},
		{"café", false},
	}
	for _, tt := range tests {
		if got := ValidRequestID(tt.id); got != tt.want {
			t.Errorf("ValidRequestID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

// A valid ID the client sent is kept; anything else is replaced by a new
// valid one, different every call.
func TestRequestIDFromMetadata(t *testing.T) {
	tests := []struct {
		name string
		md   metadata.MD
		keep string // "" when a new ID is wanted
	}{
		{"kept", metadata.Pairs(RequestIDHeader, "abc-123"), "abc-123"},
		{"absent", metadata.MD{}, ""},
		{"invalid", metadata.Pairs(RequestIDHeader, "a b"), ""},
		{"two", metadata.Pairs(RequestIDHeader, "a", RequestIDHeader, "b"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.NewIncomingContext(context.Background(), tt.md)
			first, second := requestID(ctx), requestID(ctx)
			if tt.keep != "" {
				if first != tt.keep || second != tt.keep {
					t.Fatalf("request IDs %q, %q, want %q", first, second, tt.keep)
				}
				return
			}
			if !ValidRequestID(first) || first == second {
				t.Fatalf("new request IDs %q, %q: want valid and distinct", first, second)
			}
		})
	}
}
