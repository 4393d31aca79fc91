package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"

	"flotilla.dev/controlplane/internal/ids"
)

// Prefixes make a leaked secret recognisable by secret scanners and tell an
// operator at a glance which kind of token they hold.
const (
	JoinTokenPrefix = "fjt_"
	APITokenPrefix  = "fat_"
)

var encoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSecret returns a random secret with prefix (256 bits of entropy) and the
// hash under which it is stored. Secrets are high-entropy, so a plain SHA-256
// is the right hash: there is nothing to brute-force.
func NewSecret(prefix string) (secret string, hash []byte, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("auth: random secret: %w", err)
	}
	secret = prefix + strings.ToLower(encoding.EncodeToString(b[:]))
	return secret, HashSecret(secret), nil
}

// HashSecret is the stored form of a secret.
func HashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// NewID returns a short random public identifier such as "jt-7k2m9q4x".
func NewID(prefix string) (string, error) { return ids.New(prefix) }
