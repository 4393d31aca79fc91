package rollout_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/pgtest"
)

// testApp is the application's /metrics as Prometheus scrapes it: request
// counters by status code that grow by 500 requests every 100ms, of which
// the share set by setErrors fail with 500.
type testApp struct {
	mu         sync.Mutex
	ok, failed int
	perTick    int // failed requests of each tick of 500
	srv        *httptest.Server
}

func newTestApp(t *testing.T) *testApp {
	a := &testApp{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		a.mu.Lock()
		ok, failed := a.ok, a.failed
		a.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE app_requests_total counter\n")
		fmt.Fprintf(w, "app_requests_total{service=%q,code=\"200\"} %d\n", serviceName, ok)
		fmt.Fprintf(w, "app_requests_total{service=%q,code=\"500\"} %d\n", serviceName, failed)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				a.mu.Lock()
				a.ok, a.failed = a.ok+500-a.perTick, a.failed+a.perTick
				a.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		a.srv.Close()
	})
	return a
}

// setErrors makes failed of every 500 requests fail from now on.
func (a *testApp) setErrors(failed int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.perTick = failed
}

// startPrometheus runs Debian's prometheus binary in a temporary
// directory, scraping target every second, and returns its URL once it
// answers queries with the target's data. It skips (fails under
// FLOTILLA_E2E=1) when the binary is missing.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		pgtest.Require(t, "prometheus not installed (apt-get install prometheus; make deps)")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logf.Close()
	})
	url := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Fatalf("prometheus exited:\n%s", log)
		default:
		}
		if resp, err := http.Get(url + "/api/v1/query?query=" + "app_requests_total"); err == nil {
			body := make([]byte, 4096)
			n, _ := resp.Body.Read(body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body[:n]), `"code":"500"`) {
				return url
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Fatalf("prometheus at %s did not scrape the app within 60s:\n%s", url, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promStrategy is the plan's error-rate analysis (above 1 % fails) against
// a real Prometheus: rate over 3s, at least 100 requests per interval.
func promStrategy(url string, bake time.Duration) *flotillav1.RolloutStrategy {
	s := strategy(1)
	s.Canary = 1
	s.AutoRollback = true
	s.Analysis = &flotillav1.Analysis{
		PrometheusUrl: url,
		Queries: []*flotillav1.AnalysisQuery{{
			Name: "error-rate",
			Query: `sum(rate(app_requests_total{service="{{.Service}}",code=~"5.."}[{{.Interval}}]))` +
				` / sum(rate(app_requests_total{service="{{.Service}}"}[{{.Interval}}]))`,
			FailWhen: flotillav1.Comparison_COMPARISON_GREATER, Threshold: 0.01,
			MinRequestsQuery: `sum(increase(app_requests_total{service="{{.Service}}"}[{{.Interval}}]))`, MinRequests: 100,
		}},
		Interval: durationpb.New(3 * time.Second),
		Bake:     durationpb.New(bake),
	}
	return s
}

// waitLong waits for one of states with a deadline fit for measurements
// every few seconds on a loaded machine.
func (c *cluster) waitLong(id string, states ...flotillav1.RolloutState) *flotillav1.Rollout {
	c.t.Helper()
	var last *flotillav1.Rollout
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		last = c.get(id)
		for _, s := range states {
			if last.GetState() == s {
				return last
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("rollout %s did not reach %v; last:\n%s", id, states, describe(last))
	return nil
}

// Against a real Prometheus scraping the application: a release whose
// error rate rises above 1 % during the bake is rolled back; one at 0.2 %
// passes its gates and bake and SUCCEEDS.
func TestAnalysisWithPrometheus(t *testing.T) {
	app := newTestApp(t)
	url := startPrometheus(t, strings.TrimPrefix(app.srv.URL, "http://"))
	c := newCluster(t, clusterOptions{web: 2})
	c.start()
	c.putService(nil)

	app.setErrors(1) // 0.2 %
	bad := c.startRollout(newImage, promStrategy(url, time.Hour)).GetId()
	c.waitLong(bad, flotillav1.RolloutState_ROLLOUT_STATE_BAKING)
	app.setErrors(25) // 5 %
	r := c.waitLong(bad, flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, flotillav1.RolloutState_ROLLOUT_STATE_FAILED,
		flotillav1.RolloutState_ROLLOUT_STATE_ROLLBACK_FAILED, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED)
	if r.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK || !strings.Contains(r.GetMessage(), "analysis failed during the bake") {
		t.Fatalf("bad release ended %s %q, want ROLLED_BACK by the bake's analysis", r.GetState(), r.GetMessage())
	}
	res := analysisResults(c.history(bad))
	last := res[len(res)-1]
	if last.GetVerdict() != flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL || last.GetBatch() != -1 || last.GetValue() <= 0.01 {
		t.Fatalf("last measurement %v, want a FAIL above 0.01 in the bake", last)
	}
	t.Logf("bad release: %d measurements, last %s = %.4f (threshold %.2f)", len(res), last.GetVerdict(), last.GetValue(), last.GetThreshold())

	app.setErrors(1)
	good := c.startRollout(newImage, promStrategy(url, 4*time.Second)).GetId()
	r = c.waitLong(good, flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED, flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK,
		flotillav1.RolloutState_ROLLOUT_STATE_FAILED, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED)
	if r.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
		t.Fatalf("good release ended %s %q, want SUCCEEDED", r.GetState(), r.GetMessage())
	}
	res = analysisResults(c.history(good))
	bake := 0
	for _, m := range res {
		if m.GetVerdict() != flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_PASS {
			t.Fatalf("good release measured %v, want only passes", m)
		}
		if m.GetBatch() == -1 {
			bake++
		}
	}
	if bake == 0 {
		t.Fatalf("good release: no measurement in the bake (%v)", res)
	}
	t.Logf("good release: %d measurements (%d in the bake), all PASS", len(res), bake)
}
