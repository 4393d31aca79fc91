package analysis_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// fakeProm is a Prometheus HTTP API (/api/v1/query) answering in the real
// JSON format with the values a test sets per query.
type fakeProm struct {
	mu      sync.Mutex
	answers map[string]string // query -> JSON "data" object
	queries []string
}

func newFakeProm(t *testing.T) (*fakeProm, string) {
	f := &fakeProm{answers: make(map[string]string)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.URL.Path != "/api/v1/query" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		q := r.Form.Get("query")
		f.mu.Lock()
		f.queries = append(f.queries, q)
		data, ok := f.answers[q]
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":"unknown query %s"}`, jsonString(q))
			return
		}
		_, _ = fmt.Fprintf(w, `{"status":"success","data":%s}`, data)
	}))
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// vector answers q with one sample per value (strings: "NaN" is allowed).
func (f *fakeProm) vector(q string, values ...string) {
	var b []byte
	b = append(b, `{"resultType":"vector","result":[`...)
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, fmt.Sprintf(`{"metric":{"instance":"h%d"},"value":[1700000000.123,%s]}`, i, jsonString(v))...)
	}
	b = append(b, "]}"...)
	f.set(q, string(b))
}

func (f *fakeProm) scalar(q, v string) {
	f.set(q, fmt.Sprintf(`{"resultType":"scalar","result":[1700000000.123,%s]}`, jsonString(v)))
}

func (f *fakeProm) set(q, data string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[q] = data
}
