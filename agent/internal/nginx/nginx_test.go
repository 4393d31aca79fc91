package nginx

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"
)

// execute runs spec and returns its DrainResult, failing the test on error.
func execute(t *testing.T, e *Executor, spec *flotillav1.CommandSpec) *flotillav1.DrainResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	res, err := e.Execute(ctx, spec, nil)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if res.GetDrain() == nil {
		t.Fatalf("Execute returned %v, want a DrainResult", res)
	}
	return res.GetDrain()
}

// load sends requests through nginx from several goroutines until stopped,
// for at most loadLimit, and counts the failures.
type load struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	requests atomic.Int64
	failures atomic.Int64
	mu       sync.Mutex
	errs     []string // the first failures, for the report
}

const (
	loadWorkers = 4
	loadLimit   = 20 * time.Second
	maxRequests = 200_000
)

func startLoad(t *testing.T, url string, names ...string) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	deadline := time.Now().Add(loadLimit)
	for range loadWorkers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for time.Now().Before(deadline) && l.requests.Add(1) <= maxRequests {
				select {
				case <-l.stop:
					return
				default:
				}
				if err := get(client, url, names); err != nil {
					l.fail(err)
				}
			}
		}()
	}
	t.Cleanup(l.finish)
	return l
}

// get sends one request and checks that a backend answered it.
func get(client *http.Client, url string, names []string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	for _, n := range names {
		if resp.StatusCode == http.StatusOK && string(body) == n {
			return nil
		}
	}
	return fmt.Errorf("status %d, body %q", resp.StatusCode, body)
}

func (l *load) fail(err error) {
	l.failures.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 5 {
		l.errs = append(l.errs, err.Error())
	}
}

// finish stops the load and waits for the requests in flight.
func (l *load) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func TestDrainUnderLoad(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	n := newNginx(t, a, b)
	n.start(t)
	e := n.executor(t)

	l := startLoad(t, n.url, "a", "b")
	waitFor(t, "traffic on both backends", func() bool { return a.hits.Load() >= 20 && b.hits.Load() >= 20 })

	workers := n.workers(t)
	res := execute(t, e, drainSpec("app", b.addr))
	want := &flotillav1.DrainResult{Upstream: "app", Server: b.addr, File: n.upstreamFile, Changed: true}
	if !proto.Equal(res, want) {
		t.Fatalf("drain result = %v, want %v", res, want)
	}
	n.waitReloaded(t, workers)

	// After the reload, b gets nothing while a keeps serving.
	drained, aFrom := b.hits.Load(), a.hits.Load()
	waitFor(t, "200 more requests on a", func() bool { return a.hits.Load() >= aFrom+200 })
	if got := b.hits.Load(); got != drained {
		t.Errorf("the drained backend served %d requests after the reload", got-drained)
	}

	workers = n.workers(t)
	if res := execute(t, e, undrainSpec("app", b.addr)); !res.GetChanged() {
		t.Fatalf("undrain result = %v, want changed", res)
	}
	n.waitReloaded(t, workers)
	waitFor(t, "traffic to return to b", func() bool { return b.hits.Load() >= drained+20 })

	l.finish()
	if f := l.failures.Load(); f != 0 {
		t.Errorf("%d of %d requests failed, e.g. %q", f, l.requests.Load(), l.errs)
	}
	t.Logf("%d requests through nginx; a served %d, b %d", l.requests.Load(), a.hits.Load(), b.hits.Load())
}

// TestDrainIsIdempotent drains twice through a symlinked upstream file: the
// second drain changes nothing and does not reload nginx.
func TestDrainIsIdempotent(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	n := newNginx(t, a, b)
	link := filepath.Join(n.dir, "app-link.conf")
	if err := os.Symlink(n.upstreamFile, link); err != nil {
		t.Fatal(err)
	}
	n.start(t)
	e, err := New(Config{ConfigFile: n.conf, Upstreams: map[string]Upstream{"app": {File: link}}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	workers := n.workers(t)
	if res := execute(t, e, drainSpec("app", a.addr)); !res.GetChanged() || res.GetFile() != n.upstreamFile {
		t.Fatalf("first drain = %v, want changed in %s", res, n.upstreamFile)
	}
	n.waitReloaded(t, workers)
	before := fileState(t, n.upstreamFile)

	if res := execute(t, e, drainSpec("app", a.addr)); res.GetChanged() {
		t.Fatalf("second drain = %v, want unchanged", res)
	}
	if after := fileState(t, n.upstreamFile); after != before {
		t.Errorf("the second drain rewrote the file: %+v, was %+v", after, before)
	}

	// Reloads are handled in order, so once the undrain's reload is done, a
	// reload by the second drain would have been logged too.
	workers = n.workers(t)
	execute(t, e, undrainSpec("app", a.addr))
	n.waitReloaded(t, workers)
	if got := n.reloads(t); got != 2 {
		t.Errorf("nginx reloaded %d times, want 2 (drain, undrain)", got)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v, %v", fi, err)
	}
	if fi, err := os.Stat(n.upstreamFile); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the upstream file's mode is %v (%v), want 0640", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(n.upstreamFile))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

// TestDrainingEveryServerWarns drains both servers: allowed, but the log
// and the progress say that the upstream serves nothing.
func TestDrainingEveryServerWarns(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	n := newNginx(t, a, b)
	n.start(t)
	core, logs := observer.New(zap.WarnLevel)
	e, err := New(Config{ConfigFile: n.conf, Upstreams: map[string]Upstream{"app": {File: n.upstreamFile}}}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	var messages []string
	progress := func(p *flotillav1.CommandProgress) { messages = append(messages, p.GetMessage()) }
	for _, server := range []string{a.addr, b.addr} {
		if _, err := e.Execute(context.Background(), drainSpec("app", server), progress); err != nil {
			t.Fatalf("drain %s: %v", server, err)
		}
	}
	const want = "every server of upstream app in"
	if last := messages[len(messages)-1]; !strings.Contains(last, want) {
		t.Errorf("last progress %q does not contain %q (all: %q)", last, want, messages)
	}
	if got := logs.FilterMessageSnippet(want).Len(); got != 1 {
		t.Errorf("%d warnings that the upstream is empty, want 1 (logs: %v)", got, logs.All())
	}
}

// fileSnapshot is what a rewrite would change.
type fileSnapshot struct {
	content string
	inode   uint64
	modTime time.Time
}

func fileState(t *testing.T, path string) fileSnapshot {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileSnapshot{content: string(b), inode: inode(fi), modTime: fi.ModTime()}
}

// TestRefusedChangeIsRolledBack breaks the configuration, so that nginx -t
// or the reload fails, and checks that the upstream file is back byte for
// byte and the error carries nginx's message.
func TestRefusedChangeIsRolledBack(t *testing.T) {
	tests := []struct {
		name    string
		running bool
		breakIt func(t *testing.T, n *nginxServer)
		want    []string
	}{{
		name:    "nginx -t fails",
		running: true,
		breakIt: func(t *testing.T, n *nginxServer) {
			writeFile(t, n.extraFile, "flotilla_bogus_directive on;\n", 0o644)
		},
		want: []string{"nginx refused the new configuration", `unknown directive "flotilla_bogus_directive"`, "was restored"},
	}, {
		name:    "reload fails",
		running: false, // no pid file: nginx -t passes, nginx -s reload cannot signal
		breakIt: func(*testing.T, *nginxServer) {},
		want:    []string{"reloading nginx failed", "nginx.pid", "was restored"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startBackend(t, "a"), startBackend(t, "b")
			n := newNginx(t, a, b)
			if tt.running {
				n.start(t)
			}
			e := n.executor(t)
			tt.breakIt(t, n)
			before := fileState(t, n.upstreamFile)

			res, err := e.Execute(context.Background(), drainSpec("app", b.addr), nil)
			if err == nil {
				t.Fatalf("Execute = %v, want a failure", res)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			after := fileState(t, n.upstreamFile)
			if after.content != before.content {
				t.Errorf("upstream file not restored:\n%s\nwant:\n%s", after.content, before.content)
			}
			if fi, _ := os.Stat(n.upstreamFile); fi.Mode().Perm() != 0o640 {
				t.Errorf("restored file mode %v, want 0640", fi.Mode())
			}
			if tt.running && n.reloads(t) != 0 {
				t.Errorf("nginx reloaded %d times, want 0", n.reloads(t))
			}
		})
	}
}

// TestConcurrentCommands runs drains and undrains at once: they are
// serialized, all succeed, and the file ends valid.
func TestConcurrentCommands(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	n := newNginx(t, a, b)
	n.start(t)
	e := n.executor(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		wg.Go(func() {
			spec := drainSpec("app", []string{a.addr, b.addr}[i%2])
			if i >= 4 {
				spec = undrainSpec("app", []string{a.addr, b.addr}[i%2])
			}
			if _, err := e.Execute(context.Background(), spec, nil); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Execute: %v", err)
	}
	content, err := os.ReadFile(n.upstreamFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseUpstreams(content); err != nil {
		t.Fatalf("the upstream file no longer parses: %v\n%s", err, content)
	}
	if err := e.testConfig(context.Background()); err != nil {
		t.Fatalf("nginx -t after the commands: %v", err)
	}
}
