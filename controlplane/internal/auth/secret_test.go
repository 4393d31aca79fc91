package auth_test

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"testing"

	"flotilla.dev/controlplane/internal/auth"
)

func TestNewSecret(t *testing.T) {
	// 32 random bytes in unpadded base32 are 52 characters.
	tests := []struct {
		prefix  string
		wantLen int
	}{
		{auth.JoinTokenPrefix, 4 + 52},
		{auth.APITokenPrefix, 4 + 52},
		{"", 52},
	}
	for _, tt := range tests {
		t.Run("prefix "+tt.prefix, func(t *testing.T) {
			body := regexp.MustCompile(`^` + regexp.QuoteMeta(tt.prefix) + `[a-z2-7]{52}$`)
			seen := map[string]bool{}
			for range 100 {
				secret, hash, err := auth.NewSecret(tt.prefix)
				if err != nil {
					t.Fatalf("NewSecret: %v", err)
				}
				if len(secret) != tt.wantLen || !body.MatchString(secret) {
					t.Fatalf("secret %q: want %q then 52 lower-case base32 characters (%d in all)", secret, tt.prefix, tt.wantLen)
				}
				sum := sha256.Sum256([]byte(secret))
				if hex.EncodeToString(hash) != hex.EncodeToString(sum[:]) {
					t.Fatalf("hash of %q = %x, want its SHA-256 %x", secret, hash, sum)
				}
				if seen[secret] {
					t.Fatalf("NewSecret returned %q twice", secret)
				}
				seen[secret] = true
			}
		})
	}
}

func TestHashSecret(t *testing.T) {
	tests := []struct {
		secret, want string
	}{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(auth.HashSecret(tt.secret)); got != tt.want {
			t.Errorf("HashSecret(%q) = %s, want %s", tt.secret, got, tt.want)
		}
	}
	if hex.EncodeToString(auth.HashSecret("fat_a")) == hex.EncodeToString(auth.HashSecret("fat_b")) {
		t.Error("different secrets hash alike")
	}
}

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^jt-[a-z2-7]{8}$`)
	seen := map[string]bool{}
	for range 100 {
		id, err := auth.NewID("jt-")
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(id) {
			t.Fatalf("NewID = %q, want jt- and 8 lower-case base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("NewID returned %q twice", id)
		}
		seen[id] = true
	}
}

func TestRoles(t *testing.T) {
	tests := []struct {
		role auth.Role
		name string
	}{
		{auth.RoleViewer, "viewer"},
		{auth.RoleOperator, "operator"},
		{auth.RoleAdmin, "admin"},
	}
	for _, tt := range tests {
		if got := tt.role.String(); got != tt.name {
			t.Errorf("Role(%d).String() = %q, want %q", tt.role, got, tt.name)
		}
		got, err := auth.ParseRole(tt.name)
		if err != nil || got != tt.role {
			t.Errorf("ParseRole(%q) = %v, %v; want %v", tt.name, got, err, tt.role)
		}
	}
	for _, bad := range []string{"", "none", "Admin", "root", " admin"} {
		got, err := auth.ParseRole(bad)
		if err == nil || got != auth.RoleNone {
			t.Errorf("ParseRole(%q) = %v, %v; want RoleNone and an error", bad, got, err)
		}
	}
	for _, r := range []auth.Role{auth.RoleNone, auth.Role(99), auth.Role(-1)} {
		if got := r.String(); got != "none" {
			t.Errorf("Role(%d).String() = %q, want none", r, got)
		}
	}
	if !(auth.RoleNone < auth.RoleViewer && auth.RoleViewer < auth.RoleOperator && auth.RoleOperator < auth.RoleAdmin) {
		t.Error("roles are not ordered none < viewer < operator < admin")
	}
}
