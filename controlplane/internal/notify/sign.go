package notify

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every signing secret: "whsec_" and the key's bytes
// in standard base64.
const SecretPrefix = "whsec_"

// Bounds of a signing key, in bytes.
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// NewSecret makes a signing secret with a 32-byte random key.
func NewSecret() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("notify: making a signing secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// SecretKey decodes a "whsec_<base64>" secret into its key.
func SecretKey(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("a signing secret starts with %q", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, errors.New("a signing secret is " + SecretPrefix + " and standard base64")
	}
	return key, nil
}

// ValidateSecret checks a secret's format and key size.
func ValidateSecret(secret string) error {
	key, err := SecretKey(secret)
	if err != nil {
		return err
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return fmt.Errorf("a signing key has %d to %d bytes, not %d", MinSecretBytes, MaxSecretBytes, len(key))
	}
	return nil
}

// Fingerprint names a secret without revealing it: the first 12 hex
// digits of the SHA-256 of its key (of the text for anything else, such
// as a Slack URL).
func Fingerprint(secret string) string {
	b := []byte(secret)
	if key, err := SecretKey(secret); err == nil {
		b = key
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:12]
}

// Sign returns the Standard Webhooks signature of one message under one
// key: base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)).
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SignatureHeader is the webhook-signature value: "v1,<signature>" for
// every secret, space-separated.
func SignatureHeader(secrets []string, id string, timestamp int64, body []byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for i, s := range secrets {
		key, err := SecretKey(s)
		if err != nil {
			return "", fmt.Errorf("secrets[%d]: %w", i, err)
		}
		sigs = append(sigs, "v1,"+Sign(key, id, timestamp, body))
	}
	return strings.Join(sigs, " "), nil
}

// ErrSignature is returned by Verify for a request no secret signed.
var ErrSignature = errors.New("no matching webhook signature")

// Verify checks a received request as a receiver does: the timestamp
// within tolerance of now (replays are refused), and one of the
// signatures in the header made by secret. It is the reference a
// receiver's code can follow (docs/notifications.md).
func Verify(secret, id, timestamp, signatures string, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := SecretKey(secret)
	if err != nil {
		return err
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: not Unix seconds", timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp %d: %s away from now, more than %s", ts, d.Round(time.Second), tolerance)
	}
	want := []byte(Sign(key, id, ts, body))
	for _, sig := range strings.Fields(signatures) {
		version, value, ok := strings.Cut(sig, ",")
		if ok && version == "v1" && hmac.Equal([]byte(value), want) {
			return nil
		}
	}
	return ErrSignature
}
