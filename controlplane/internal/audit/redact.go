package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// maxRequest bounds the request JSON kept per event.
const maxRequest = 16 << 10

// Redacted replaces a secret's value in an audited request.
const Redacted = "[REDACTED]"

// Redact returns req as JSON (proto field names) with secrets removed:
// join tokens, token secrets, passwords, private keys and credentials are
// replaced by "[REDACTED]", and certificate signing requests by their size
// ("[elided: N bytes]"). The rule goes by field name at every depth, so a
// field added later with such a name is covered without a change here; map
// keys that look like such names are treated the same (over-redaction is
// the safe side). Requests longer than 16 KiB are truncated.
func Redact(req any) string {
	m, ok := req.(proto.Message)
	if !ok || m == nil {
		return ""
	}
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return fmt.Sprintf(`{"error": "request not representable as JSON: %T"}`, req)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Sprintf(`{"error": "request not representable as JSON: %T"}`, req)
	}
	out, err := json.Marshal(redactValue(v))
	if err != nil {
		return fmt.Sprintf(`{"error": "request not representable as JSON: %T"}`, req)
	}
	if len(out) > maxRequest {
		return string(out[:maxRequest]) + fmt.Sprintf("…[truncated: %d bytes in all]", len(out))
	}
	return string(out)
}

func redactValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			switch sensitivity(k) {
			case elide:
				v[k] = elided(val)
			case secret:
				v[k] = Redacted
			default:
				v[k] = redactValue(val)
			}
		}
		return v
	case []any:
		for i := range v {
			v[i] = redactValue(v[i])
		}
		return v
	default:
		return v
	}
}

type sensitive int

const (
	plain sensitive = iota
	secret
	elide
)

// sensitivity classifies a field name.
func sensitivity(name string) sensitive {
	n := strings.ToLower(name)
	switch {
	case n == "csr" || strings.HasSuffix(n, "_csr"):
		return elide
	case n == "token" || n == "secret" || n == "join_token" || n == "authorization" || n == "bearer",
		strings.HasSuffix(n, "_secret"),
		// Webhook signing secrets, and sink URLs (a Slack webhook URL is
		// a credential; any endpoint's query may carry one).
		n == "secrets", strings.HasSuffix(n, "_secrets"), n == "url", n == "webhook_url",
		strings.HasSuffix(n, "_token") && n != "page_token" && n != "next_page_token",
		strings.Contains(n, "password"), strings.Contains(n, "passphrase"),
		strings.Contains(n, "private_key"), strings.Contains(n, "credential"):
		return secret
	}
	return plain
}

// elided describes a bytes field (base64 in JSON) by its size only.
func elided(v any) any {
	s, ok := v.(string)
	if !ok {
		return Redacted
	}
	n := base64.StdEncoding.DecodedLen(len(s))
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		n = len(b)
	}
	return fmt.Sprintf("[elided: %d bytes]", n)
}
