package health

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// document is the /health body. Fields are kept raw so that an application
// reporting, say, "database": {"ok": true} is shown as it is rather than
// failing the whole parse.
type document struct {
	Status, Timestamp, Database, Cache string
}

type rawDocument struct {
	Status    json.RawMessage `json:"status"`
	Timestamp json.RawMessage `json:"timestamp"`
	Database  json.RawMessage `json:"database"`
	Cache     json.RawMessage `json:"cache"`
}

func parse(body []byte) (document, error) {
	var raw rawDocument
	if err := json.Unmarshal(body, &raw); err != nil {
		return document{}, err
	}
	return document{
		Status:    text(raw.Status),
		Timestamp: text(raw.Timestamp),
		Database:  text(raw.Database),
		Cache:     text(raw.Cache),
	}, nil
}

// text renders a JSON value: a string as its content, null or absent as "",
// anything else as compact JSON.
func text(v json.RawMessage) string {
	if len(v) == 0 || string(v) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, v) != nil {
		return string(v)
	}
	return buf.String()
}

// verdict returns why a check is unhealthy, or "" when it is healthy: a 2xx
// response whose body parses, with status "healthy", and database and cache
// "ok" where the application reports them.
func verdict(code int, doc document, parseErr error) string {
	switch {
	case code < 200 || code > 299:
		return fmt.Sprintf("status %d", code)
	case parseErr != nil:
		return "invalid JSON: " + parseErr.Error()
	case doc.Status == "":
		return `status is missing (want "healthy")`
	case doc.Status != "healthy":
		return fmt.Sprintf("status is %q", doc.Status)
	case doc.Database != "" && doc.Database != "ok":
		return fmt.Sprintf("database is %q", doc.Database)
	case doc.Cache != "" && doc.Cache != "ok":
		return fmt.Sprintf("cache is %q", doc.Cache)
	}
	return ""
}
