package objstore

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// The example "GET Object" of Amazon's Signature Version 4 documentation
// (sig-v4-header-based-auth.html): its keys, date, headers and signature.
func TestSignV4MatchesAmazonsExample(t *testing.T) {
	req, err := http.NewRequest(http.MethodGet, "https://examplebucket.s3.amazonaws.com/test.txt", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Range", "bytes=0-9")
	creds := s3Credentials{accessKeyID: "AKIAIOSFODNN7EXAMPLE", secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
	signV4(req, creds, "us-east-1", emptySHA256, time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC))
	want := "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, " +
		"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, " +
		"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
	if got := req.Header.Get("Authorization"); got != want {
		t.Errorf("Authorization:\n%s\nwant\n%s", got, want)
	}
}

func TestCanonicalQueryAndKeyEncoding(t *testing.T) {
	q := map[string][]string{"prefix": {"wal/a b+c"}, "list-type": {"2"}, "uploads": {""}}
	if got, want := canonicalQuery(q), "list-type=2&prefix=wal%2Fa%20b%2Bc&uploads="; got != want {
		t.Errorf("canonicalQuery = %q, want %q", got, want)
	}
	if got, want := uriEncode("db/2026-12-07T02:00:00Z.dump~1", false), "db/2026-12-07T02%3A00%3A00Z.dump~1"; got != want {
		t.Errorf("uriEncode = %q, want %q", got, want)
	}
	if strings.Contains(uriEncode("é", false), "é") {
		t.Error("non-ASCII bytes must be percent-encoded")
	}
}
