package nginx

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

func TestSwapServers(t *testing.T) {
	src := "upstream app {\n    server 10.0.0.1:8080 max_fails=0; # web-1\n    server \"10.0.0.2:8080\" down;\n}\nupstream other {\n    server 10.0.0.1:8080;\n}\n"
	for _, tc := range []struct {
		name    string
		block   string
		swaps   []swap
		want    string
		swapped int
		err     string
	}{
		{name: "every server of the block, parameters kept", block: "app",
			swaps:   []swap{{"10.0.0.1:8080", "10.0.0.1:8081"}, {"10.0.0.2:8080", "10.0.0.2:8081"}},
			want:    "upstream app {\n    server 10.0.0.1:8081 max_fails=0; # web-1\n    server 10.0.0.2:8081 down;\n}\nupstream other {\n    server 10.0.0.1:8080;\n}\n",
			swapped: 2},
		{name: "done already is no change", block: "app", swaps: []swap{{"10.0.0.9:8081", "10.0.0.1:8080"}}, want: src},
		{name: "neither server", block: "app", swaps: []swap{{"10.0.0.9:8080", "10.0.0.9:8081"}}, err: "server not found"},
		{name: "both servers", block: "app", swaps: []swap{{"10.0.0.1:8080", "10.0.0.2:8080"}}, err: "both servers"},
		{name: "unknown block", block: "nope", swaps: []swap{{"10.0.0.1:8080", "10.0.0.1:8081"}}, err: "upstream block not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := swapServers([]byte(src), tc.block, tc.swaps)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(out.content) != tc.want || out.swapped != tc.swapped {
				t.Fatalf("got %d swapped:\n%s\nwant %d:\n%s", out.swapped, out.content, tc.swapped, tc.want)
			}
		})
	}
}

func swapSpec(upstream string, pairs ...string) *flotillav1.CommandSpec {
	c := &flotillav1.SwapServersCommand{Upstream: upstream}
	for i := 0; i+1 < len(pairs); i += 2 {
		c.Swaps = append(c.Swaps, &flotillav1.ServerSwap{From: pairs[i], To: pairs[i+1]})
	}
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_SwapServers{SwapServers: c}}
}

func TestSwapValidate(t *testing.T) {
	e := newOfflineExecutor(t, "/nonexistent/app.conf")
	for _, tc := range []struct {
		spec *flotillav1.CommandSpec
		want string
	}{
		{swapSpec("app"), "swap_servers.swaps"},
		{swapSpec("nope", "a:1", "a:2"), "swap_servers.upstream"},
		{swapSpec("app", "a", "a:2"), "swap_servers.swaps[0]"},
		{swapSpec("app", "a:1", "a:2", "a:2", "a:3"), "appears twice"},
	} {
		if err := e.Validate(tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%v) = %v, want %q", tc.spec, err, tc.want)
		}
	}
}

// TestSwapUnderLoad moves every server of the upstream to other backends
// in one reload under load: no request fails, and after the reload the old
// backends get nothing; the same swap again changes nothing.
func TestSwapUnderLoad(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	a2, b2 := startBackend(t, "a2"), startBackend(t, "b2")
	n := newNginx(t, a, b)
	n.start(t)
	e := n.executor(t)
	l := startLoad(t, n.url, "a", "b", "a2", "b2")
	waitFor(t, "traffic on both backends", func() bool { return a.hits.Load() >= 20 && b.hits.Load() >= 20 })

	workers := n.workers(t)
	spec := swapSpec("app", a.addr, a2.addr, b.addr, b2.addr)
	res, err := e.Execute(context.Background(), spec, nil)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if got := res.GetSwap(); got.GetSwapped() != 2 || got.GetFile() != n.upstreamFile {
		t.Fatalf("swap result = %v, want 2 swapped in %s", got, n.upstreamFile)
	}
	n.waitReloaded(t, workers)
	oldA, oldB := a.hits.Load(), b.hits.Load()
	waitFor(t, "200 requests on the new backends", func() bool { return a2.hits.Load()+b2.hits.Load() >= 200 })
	if a.hits.Load() != oldA || b.hits.Load() != oldB {
		t.Errorf("the old backends served %d requests after the reload", a.hits.Load()-oldA+b.hits.Load()-oldB)
	}
	reloads := n.reloads(t)
	if res, err := e.Execute(context.Background(), spec, nil); err != nil || res.GetSwap().GetSwapped() != 0 {
		t.Fatalf("the same swap again: %v, %v; want 0 swapped", res, err)
	}
	if n.reloads(t) != reloads {
		t.Errorf("a swap done already reloaded nginx")
	}
	l.finish()
	if f := l.failures.Load(); f != 0 {
		t.Errorf("%d of %d requests failed, e.g. %q", f, l.requests.Load(), l.errs)
	}
	t.Logf("%d requests through nginx, 0 failed; one reload moved both servers", l.requests.Load())
}

// TestSwapMissingServerChangesNothing: a swap naming a server the upstream
// does not have fails, and the file is untouched.
func TestSwapMissingServerChangesNothing(t *testing.T) {
	a := startBackend(t, "a")
	n := newNginx(t, a)
	e := n.executor(t)
	before, _ := os.ReadFile(n.upstreamFile)
	_, err := e.Execute(context.Background(), swapSpec("app", "127.0.0.1:1", "127.0.0.1:2"), nil)
	if err == nil || !errors.Is(err, errServerNotFound) {
		t.Fatalf("Execute: %v, want server not found", err)
	}
	if after, _ := os.ReadFile(n.upstreamFile); string(after) != string(before) {
		t.Fatalf("the file changed:\n%s", after)
	}
}
