package harness

import (
	"strings"
	"testing"
)

func TestCheckStore(t *testing.T) {
	for _, c := range []struct {
		store string
		ok    bool
	}{{"sqlite", true}, {"postgres", true}, {"", false}, {"Postgres", false}, {"mysql", false}} {
		err := CheckStore(c.store)
		if (err == nil) != c.ok {
			t.Errorf("CheckStore(%q) = %v, want ok %v", c.store, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "-store") {
			t.Errorf("CheckStore(%q) = %q, does not name the flag", c.store, err)
		}
	}
}

func TestStoreDescription(t *testing.T) {
	for _, c := range []struct {
		store, root string
		want        []string
	}{
		{"sqlite", "/dev/shm", []string{"store sqlite", "/dev/shm"}},
		{"postgres", "/var/tmp", []string{"store postgres", "/var/tmp", "fsync=on", "shared_buffers=128MB"}},
	} {
		got := StoreDescription(c.store, c.root)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("StoreDescription(%q, %q) = %q, lacks %q", c.store, c.root, got, w)
			}
		}
	}
}

func TestPostgresStoreYAMLKeepsThePasswordOut(t *testing.T) {
	s := &postgresStore{dsn: "host=127.0.0.1 port=5 user=flotilla dbname=flotilla sslmode=disable", passwordFile: "/x/postgres.password"}
	got := s.storeYAML()
	for _, w := range []string{"driver: postgres", `dsn: "host=127.0.0.1 port=5`, `password_file: "/x/postgres.password"`} {
		if !strings.Contains(got, w) {
			t.Errorf("storeYAML() = %q, lacks %q", got, w)
		}
	}
	if strings.Contains(got, "password=") {
		t.Errorf("storeYAML() = %q carries a password", got)
	}
}
