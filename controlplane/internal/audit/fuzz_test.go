package audit

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// FuzzRedact feeds Redact any RegisterRequest carrying a known join token:
// the token never appears in the result unless another field carries it
// too, and the result is JSON unless it was truncated.
// Seeds: below and testdata/fuzz/FuzzRedact/.
func FuzzRedact(f *testing.F) {
	for _, s := range []*flotillav1.RegisterRequest{
		{JoinToken: "x", Csr: []byte("csr"), Hostname: "web-1", Labels: map[string]string{"env": "prod"}},
		{Labels: map[string]string{"token": "t", "join_token": "j", "csr": "c"}},
	} {
		b, _ := proto.Marshal(s)
		f.Add(b)
	}
	const sentinel = "fjt_SENTINEL0123456789"
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(flotillav1.RegisterRequest)
		if proto.Unmarshal(b, req) != nil {
			return
		}
		req.JoinToken = sentinel
		out := Redact(req)
		if strings.Contains(out, sentinel) {
			without := proto.Clone(req).(*flotillav1.RegisterRequest)
			without.JoinToken = ""
			plain, _ := protojson.Marshal(without)
			if !strings.Contains(string(plain), sentinel) {
				t.Fatalf("the join token leaked: %s", out)
			}
		}
		if !strings.Contains(out, "[truncated") && !json.Valid([]byte(out)) {
			t.Fatalf("not JSON: %s", out)
		}
	})
}
