package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// rolloutService is the full name of the rollout API.
const rolloutService = "flotilla.v1.RolloutService/"

// readmeAddr is the control plane's address in the README's examples.
const readmeAddr = "127.0.0.1:7443"

// fgrpc renders a grpcurl invocation in the README's form: its fgrpc
// alias carries the CA file and the token, and the control plane listens
// on readmeAddr.
func (g grpcurl) fgrpc(args ...string) string {
	parts := []string{"fgrpc"}
	for _, a := range args {
		if a == g.addr {
			a = readmeAddr
		}
		if strings.ContainsAny(a, " \"{}[]$*;&|<>()'\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// invokeRollout runs a unary RolloutService method with a JSON body, logs
// the command line and an abridged answer, and returns grpcurl's output.
func (g grpcurl) invokeRollout(t *testing.T, method, body string) (string, error) {
	t.Helper()
	args := []string{"-d", body, g.addr, rolloutService + method}
	t.Logf("$ %s", g.fgrpc(args...))
	out, err := g.run(args...)
	t.Logf("  → %s", abridgeLines(out, 40))
	return out, err
}

// rpcRollout invokes a RolloutService method and decodes its answer.
func (g grpcurl) rpcRollout(t *testing.T, method, body string, out any) {
	t.Helper()
	text, err := g.invokeRollout(t, method, body)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if err := json.Unmarshal([]byte(text), out); err != nil {
		t.Fatalf("%s answered what is not JSON: %v\n%s", method, err, text)
	}
}

// watchRollout starts `grpcurl ... WatchRollout` in the background; the
// stream ends with the rollout, or at timeout.
func (g grpcurl) watchRollout(t *testing.T, id string, timeout time.Duration) *watchStream {
	t.Helper()
	args := []string{"-d", fmt.Sprintf(`{"rollout_id": %q}`, id), g.addr, rolloutService + "WatchRollout"}
	t.Logf("$ %s", g.fgrpc(args...))
	full := []string{"-cacert", g.caFile, "-H", "authorization: Bearer " + g.token}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	w := &watchStream{cmd: exec.CommandContext(ctx, g.path, append(full, args...)...), out: &syncBuffer{}, cancel: cancel, done: make(chan struct{})}
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start grpcurl WatchRollout: %v", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// rolloutEvents waits for a WatchRollout stream to end (grpcurl must exit
// 0: the server ended the stream because the rollout ended) and decodes
// its events.
func rolloutEvents(t *testing.T, w *watchStream) []rolloutEventJSON {
	t.Helper()
	<-w.done
	if w.err != nil {
		t.Fatalf("grpcurl WatchRollout: %v\n%s", w.err, abridge(w.out.String()))
	}
	if err := trailingGarbage(w.out.String()); err != nil {
		t.Fatalf("WatchRollout output: %v\n%s", err, abridge(w.out.String()))
	}
	dec := json.NewDecoder(strings.NewReader(w.out.String()))
	var out []rolloutEventJSON
	for dec.More() {
		var e rolloutEventJSON
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("WatchRollout message: %v", err)
		}
		out = append(out, e)
	}
	return out
}

// abridgeLines keeps the first n lines of s.
func abridgeLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n[... %d more lines]", len(lines)-n)
}
