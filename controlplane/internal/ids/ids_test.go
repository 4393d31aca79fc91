package ids

import (
	"regexp"
	"testing"
)

func TestNewIsPrefixedAndUnique(t *testing.T) {
	shape := regexp.MustCompile(`^cmd-[a-z2-7]{8}$`)
	seen := map[string]bool{}
	for range 1000 {
		id, err := New("cmd-")
		if err != nil {
			t.Fatal(err)
		}
		if !shape.MatchString(id) {
			t.Fatalf("New = %q, want cmd- and 8 base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("New returned %q twice in 1000 calls", id)
		}
		seen[id] = true
	}
}
