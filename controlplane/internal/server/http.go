package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Health is the JSON of /healthz: the same shape as the applications'
// /health, so one dashboard and one agent check read both.
type Health struct {
	Status    string `json:"status"`
	Timestamp string `json:"timestamp"`
	Database  string `json:"database"`
	Cache     string `json:"cache"`
}

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{ErrorLog: zapErrorLog{s}, Registry: s.metrics}))
	mux.HandleFunc("GET /healthz", s.serveHealth)
	if s.cfg.Profiling {
		// Sample contention too: a lock or a channel that holds calls up
		// shows in /debug/pprof/mutex and /debug/pprof/block.
		runtime.SetMutexProfileFraction(100)
		runtime.SetBlockProfileRate(int(time.Millisecond))
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	h := Health{Status: "healthy", Timestamp: time.Now().UTC().Format(time.RFC3339), Database: "ok", Cache: "ok"}
	code := http.StatusOK
	if err := s.store.Ping(ctx); err != nil {
		h.Status, h.Database, code = "unhealthy", "error", http.StatusServiceUnavailable
		s.log.Warn("/healthz: store ping failed", zap.Error(err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(h)
}
