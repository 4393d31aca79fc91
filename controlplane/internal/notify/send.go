package notify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxErrorBody bounds what is read of a failed answer for the log.
const maxErrorBody = 512

// result is the outcome of one HTTP attempt.
type result struct {
	status int
	// retryAfter is the sink's Retry-After, 0 when absent or unreadable.
	retryAfter time.Duration
	err        error
}

func (r result) ok() bool { return r.err == nil && r.status >= 200 && r.status < 300 }

// post sends body to url with headers and reads the answer.
func post(ctx context.Context, client *http.Client, target string, headers http.Header, body []byte, now time.Time) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return result{err: fmt.Errorf("request not made: %s", redactURLError(err))}
	}
	req.Header = headers
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flotilla-controlplane")
	resp, err := client.Do(req)
	if err != nil {
		return result{err: fmt.Errorf("no answer: %s", redactURLError(err))}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	r := result{status: resp.StatusCode, retryAfter: RetryAfter(resp.Header.Get("Retry-After"), now)}
	if !r.ok() {
		r.err = fmt.Errorf("sink answered %d", resp.StatusCode)
		if text := strings.TrimSpace(string(snippet)); text != "" {
			r.err = fmt.Errorf("sink answered %d: %s", resp.StatusCode, strings.ToValidUTF8(text, "?"))
		}
	}
	return r
}

// redactURLError drops the URL from a client error: a Slack webhook URL
// is a secret and an endpoint's query may hold one.
func redactURLError(err error) string {
	if ue, ok := err.(*url.Error); ok {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// RetryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (relative to now). It returns 0 when the header is absent, unreadable
// or in the past.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Endpoint is a URL as the API shows it: scheme and host, the rest elided,
// because a path or query may carry a credential (Slack's always does).
func Endpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable URL)"
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		out += "/…"
	}
	return out
}
