package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve returns an httptest server answering every request with code and body.
func serve(t *testing.T, code int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func check(t *testing.T, url string, timeout time.Duration) *flotillav1.AppHealth {
	t.Helper()
	c, err := New(Config{URL: url, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.Check(context.Background())
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name        string
		code        int
		body        string
		wantHealthy bool
		wantErr     string
		wantStatus  string
		wantDB      string
		wantCache   string
	}{
		{
			name: "healthy", code: 200,
			body:        `{"status":"healthy","timestamp":"2024-05-01T10:00:00Z","database":"ok","cache":"ok"}`,
			wantHealthy: true, wantStatus: "healthy", wantDB: "ok", wantCache: "ok",
		},
		{
			name: "any 2xx counts", code: 203,
			body:        `{"status":"healthy"}`,
			wantHealthy: true, wantStatus: "healthy",
		},
		{
			name: "503 is unhealthy even with a healthy body", code: 503,
			body:    `{"status":"healthy","database":"ok"}`,
			wantErr: "status 503", wantStatus: "healthy", wantDB: "ok",
		},
		{
			name: "503 with a non-JSON body", code: 503,
			body:    `Service Unavailable`,
			wantErr: "status 503",
		},
		{
			name: "bad JSON", code: 200,
			body:    `{"status":"healthy"`,
			wantErr: "invalid JSON: unexpected end of JSON input",
		},
		{
			name: "JSON that is not an object", code: 200,
			body:    `["healthy"]`,
			wantErr: "invalid JSON: ",
		},
		{
			name: "empty body", code: 200,
			wantErr: "invalid JSON: ",
		},
		{
			name: "status degraded", code: 200,
			body:    `{"status":"degraded","database":"ok","cache":"ok"}`,
			wantErr: `status is "degraded"`, wantStatus: "degraded", wantDB: "ok", wantCache: "ok",
		},
		{
			name: "status missing", code: 200,
			body:    `{"database":"ok"}`,
			wantErr: `status is missing (want "healthy")`, wantDB: "ok",
		},
		{
			name: "database down", code: 200,
			body:    `{"status":"healthy","database":"down","cache":"ok"}`,
			wantErr: `database is "down"`, wantStatus: "healthy", wantDB: "down", wantCache: "ok",
		},
		{
			name: "cache error", code: 200,
			body:    `{"status":"healthy","database":"ok","cache":"error"}`,
			wantErr: `cache is "error"`, wantStatus: "healthy", wantDB: "ok", wantCache: "error",
		},
		{
			name: "cache missing is ok", code: 200,
			body:        `{"status":"healthy","database":"ok"}`,
			wantHealthy: true, wantStatus: "healthy", wantDB: "ok",
		},
		{
			name: "null database is ok", code: 200,
			body:        `{"status":"healthy","database":null}`,
			wantHealthy: true, wantStatus: "healthy",
		},
		{
			name: "non-string database is shown as JSON", code: 200,
			body:    `{"status":"healthy","database":{"ok": true}}`,
			wantErr: `database is "{\"ok\":true}"`, wantStatus: "healthy", wantDB: `{"ok":true}`,
		},
		{
			name: "oversized body", code: 200,
			body:    `{"status":"healthy","pad":"` + strings.Repeat("x", MaxBodyBytes) + `"}`,
			wantErr: "body exceeds 65536 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.code, tt.body)
			got := check(t, srv.URL+"/health", time.Second)
			if got.Healthy != tt.wantHealthy || !strings.HasPrefix(got.Error, tt.wantErr) || (tt.wantErr == "" && got.Error != "") {
				t.Errorf("healthy=%v error=%q; want healthy=%v error starting with %q", got.Healthy, got.Error, tt.wantHealthy, tt.wantErr)
			}
			if got.Status != tt.wantStatus || got.Database != tt.wantDB || got.Cache != tt.wantCache {
				t.Errorf("fields status=%q database=%q cache=%q; want %q %q %q",
					got.Status, got.Database, got.Cache, tt.wantStatus, tt.wantDB, tt.wantCache)
			}
			if got.HttpStatus != int32(tt.code) {
				t.Errorf("http_status = %d, want %d", got.HttpStatus, tt.code)
			}
			if got.Url != srv.URL+"/health" || got.CheckedAt == nil || got.Latency == nil {
				t.Errorf("url/checked_at/latency not filled: %v", got)
			}
		})
	}
}

func TestCheckFillsTimestamp(t *testing.T) {
	srv := serve(t, 200, `{"status":"healthy","timestamp":"2024-05-01T10:00:00Z"}`)
	if got := check(t, srv.URL, time.Second); got.Timestamp != "2024-05-01T10:00:00Z" {
		t.Errorf("timestamp = %q", got.Timestamp)
	}
}

func TestCheckTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // hang until the client gives up (or the test ends)
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	got := check(t, srv.URL, 50*time.Millisecond)
	if got.Healthy || got.Error != "timeout after 50ms" || got.HttpStatus != 0 {
		t.Errorf("got healthy=%v error=%q http_status=%d; want a timeout", got.Healthy, got.Error, got.HttpStatus)
	}
}

func TestCheckTimeoutWhileReadingBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = w.Write([]byte(`{"status":`))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	got := check(t, srv.URL, 50*time.Millisecond)
	if got.Healthy || got.Error != "timeout after 50ms" {
		t.Errorf("got healthy=%v error=%q; want a timeout", got.Healthy, got.Error)
	}
}

func TestCheckConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	got := check(t, url, time.Second)
	if got.Healthy || !strings.HasPrefix(got.Error, "request failed: ") || !strings.Contains(got.Error, "refused") {
		t.Errorf("got healthy=%v error=%q; want a refused connection", got.Healthy, got.Error)
	}
}

func TestCheckCancelled(t *testing.T) {
	srv := serve(t, 200, `{"status":"healthy"}`)
	c, err := New(Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := c.Check(ctx); got.Healthy || got.Error != "check cancelled" {
		t.Errorf("got healthy=%v error=%q", got.Healthy, got.Error)
	}
}

func TestNewValidates(t *testing.T) {
	for _, url := range []string{"", "/health", "ftp://host/health", "http://"} {
		if _, err := New(Config{URL: url}); err == nil {
			t.Errorf("New accepted URL %q", url)
		}
	}
	if _, err := New(Config{URL: "http://x", Timeout: -time.Second}); err == nil {
		t.Error("New accepted a negative timeout")
	}
}
