package notify

import (
	"strings"
	"testing"
	"time"
)

// The Standard Webhooks specification's test vector
// (github.com/standard-webhooks/standard-webhooks, the reference
// libraries' tests).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignatureMatchesTheStandardWebhooksVector(t *testing.T) {
	got, err := SignatureHeader([]string{vectorSecret}, vectorID, vectorTimestamp, []byte(vectorBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSignature {
		t.Fatalf("signature = %s, want %s", got, vectorSignature)
	}
	now := time.Unix(vectorTimestamp, 0)
	if err := Verify(vectorSecret, vectorID, "1614265330", vectorSignature, []byte(vectorBody), now, 5*time.Minute); err != nil {
		t.Fatalf("Verify(vector) = %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	other, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(vectorTimestamp, 0)
	tests := []struct {
		name, secret, id, ts, sig, body string
		at                              time.Time
	}{
		{"tampered body", vectorSecret, vectorID, "1614265330", vectorSignature, `{"test": 2432232315}`, now},
		{"other id", vectorSecret, "msg_other", "1614265330", vectorSignature, vectorBody, now},
		{"other secret", other, vectorID, "1614265330", vectorSignature, vectorBody, now},
		{"unknown version", vectorSecret, vectorID, "1614265330", strings.Replace(vectorSignature, "v1,", "v2,", 1), vectorBody, now},
		{"replayed later", vectorSecret, vectorID, "1614265330", vectorSignature, vectorBody, now.Add(6 * time.Minute)},
		{"from the future", vectorSecret, vectorID, "1614265330", vectorSignature, vectorBody, now.Add(-6 * time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Verify(tt.secret, tt.id, tt.ts, tt.sig, []byte(tt.body), tt.at, 5*time.Minute); err == nil {
				t.Fatal("Verify accepted it")
			}
		})
	}
}

// During a rotation every secret signs: a receiver that knows only the old
// one, or only the new one, verifies the request.
func TestSignatureRotation(t *testing.T) {
	next, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	header, err := SignatureHeader([]string{vectorSecret, next}, vectorID, vectorTimestamp, []byte(vectorBody))
	if err != nil {
		t.Fatal(err)
	}
	if sigs := strings.Fields(header); len(sigs) != 2 || sigs[0] != vectorSignature {
		t.Fatalf("header = %q, want the old secret's signature then the new one's", header)
	}
	now := time.Unix(vectorTimestamp, 0)
	for _, secret := range []string{vectorSecret, next} {
		if err := Verify(secret, vectorID, "1614265330", header, []byte(vectorBody), now, time.Minute); err != nil {
			t.Errorf("Verify with %s… = %v", secret[:10], err)
		}
	}
	if _, err := SignatureHeader([]string{"not-a-secret"}, vectorID, vectorTimestamp, nil); err == nil ||
		!strings.Contains(err.Error(), "secrets[0]") {
		t.Fatalf("SignatureHeader(bad secret) = %v, want an error naming secrets[0]", err)
	}
}

func TestValidateSecretAndFingerprint(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateSecret(s); err != nil {
		t.Fatalf("ValidateSecret(new) = %v", err)
	}
	for _, bad := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_***", "whsec_c2hvcnQ="} {
		if ValidateSecret(bad) == nil {
			t.Errorf("ValidateSecret(%q) accepted it", bad)
		}
	}
	fp := Fingerprint(s)
	if len(fp) != 12 || strings.Contains(s, fp) || Fingerprint(s) != fp {
		t.Fatalf("Fingerprint = %q: want 12 stable hex digits that are not part of the secret", fp)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 120 * time.Second},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"999999", maxRetryAfter},
		{"Sun, 01 Mar 2026 12:01:30 GMT", 90 * time.Second},
		{"Sun, 01 Mar 2026 11:59:00 GMT", 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := RetryAfter(tt.in, now); got != tt.want {
			t.Errorf("RetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
