package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// commandTimeout bounds a command from RunCommand to its final snapshot.
const commandTimeout = 60 * time.Second

// typed renders a grpcurl invocation as an engineer types it at a shell,
// with the CA file and token as the README's variables, for the log.
func (g grpcurl) typed(args ...string) string {
	parts := []string{"grpcurl", "-cacert", "$CA", "-H", `"authorization: Bearer $FLOTILLA_TOKEN"`}
	for _, a := range args {
		if strings.ContainsAny(a, " \"{}[]$*;&|<>()'\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// invoke runs a unary method with a JSON body exactly as typed and
// returns grpcurl's combined output; a non-zero exit is an error.
func (g grpcurl) invoke(t *testing.T, method, body string) (string, error) {
	t.Helper()
	args := []string{"-d", body, g.addr, "flotilla.v1.FleetService/" + method}
	t.Logf("$ %s", g.typed(args...))
	return g.run(args...)
}

// rpc invokes a unary method and decodes its JSON answer into out.
func (g grpcurl) rpc(t *testing.T, method, body string, out any) {
	t.Helper()
	text, err := g.invoke(t, method, body)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if err := json.Unmarshal([]byte(text), out); err != nil {
		t.Fatalf("%s answered what is not JSON: %v\n%s", method, err, text)
	}
}

// runCommand calls RunCommand and returns the fleet command it started.
func (g grpcurl) runCommand(t *testing.T, body string) fleetCommandJSON {
	t.Helper()
	var resp commandResponseJSON
	g.rpc(t, "RunCommand", body, &resp)
	if resp.Command.ID == "" {
		t.Fatalf("RunCommand answered no command ID: %+v", resp)
	}
	return resp.Command
}

// getCommand calls GetCommand.
func (g grpcurl) getCommand(t *testing.T, id string) fleetCommandJSON {
	t.Helper()
	var resp commandResponseJSON
	g.rpc(t, "GetCommand", fmt.Sprintf(`{"command_id": %q}`, id), &resp)
	return resp.Command
}

// runToEnd runs a command, follows it with WatchCommand until it ends, and
// returns its final snapshot and how long that took.
func (g grpcurl) runToEnd(t *testing.T, body string) (fleetCommandJSON, time.Duration) {
	t.Helper()
	began := time.Now()
	fc := g.runCommand(t, body)
	msgs := g.watch(t, fc.ID).wait(t)
	final := finalSnapshot(t, msgs)
	h := final.host()
	result, _ := json.Marshal(h.Result)
	t.Logf("  → %d messages; final snapshot: %s, host %s, message %q, result %s", len(msgs), final.State, h.State, h.Message, result)
	return final, time.Since(began)
}

// finalSnapshot is the last message of a finished watch, a snapshot of
// the ended command.
func finalSnapshot(t *testing.T, msgs []watchJSON) fleetCommandJSON {
	t.Helper()
	if len(msgs) == 0 || msgs[len(msgs)-1].Snapshot == nil {
		t.Fatalf("WatchCommand did not end with a snapshot: %s", dump(msgs))
	}
	fc := *msgs[len(msgs)-1].Snapshot
	if fc.State == "FLEET_COMMAND_STATE_RUNNING" || fc.State == "" {
		t.Fatalf("WatchCommand ended while the command is %q: %s", fc.State, dump(msgs))
	}
	return fc
}

// watchStream is a running `grpcurl ... WatchCommand`.
type watchStream struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// watch starts WatchCommand in the background, bounded by commandTimeout.
func (g grpcurl) watch(t *testing.T, id string) *watchStream {
	t.Helper()
	args := []string{"-d", fmt.Sprintf(`{"command_id": %q}`, id), g.addr, "flotilla.v1.FleetService/WatchCommand"}
	t.Logf("$ %s", g.typed(args...))
	full := []string{"-cacert", g.caFile, "-H", "authorization: Bearer " + g.token}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	w := &watchStream{cmd: exec.CommandContext(ctx, g.path, append(full, args...)...), out: &syncBuffer{}, cancel: cancel, done: make(chan struct{})}
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start grpcurl WatchCommand: %v", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// messages decodes the complete messages printed so far: grpcurl prints
// one JSON object per message of the stream, one after another.
func (w *watchStream) messages() []watchJSON {
	dec := json.NewDecoder(strings.NewReader(w.out.String()))
	var out []watchJSON
	for {
		var m watchJSON
		if err := dec.Decode(&m); err != nil {
			return out // io.EOF, or a message still being written
		}
		out = append(out, m)
	}
}

// wait waits for the stream to end (the command ended) and returns its
// messages; grpcurl must exit 0.
func (w *watchStream) wait(t *testing.T) []watchJSON {
	t.Helper()
	<-w.done // bounded by the command's context
	if w.err != nil {
		t.Fatalf("grpcurl WatchCommand: %v\n%s", w.err, w.out.String())
	}
	msgs := w.messages()
	if err := trailingGarbage(w.out.String()); err != nil {
		t.Fatalf("WatchCommand output: %v\n%s", err, w.out.String())
	}
	return msgs
}

// trailingGarbage reports output that is not a sequence of JSON objects.
func trailingGarbage(s string) error {
	dec := json.NewDecoder(strings.NewReader(s))
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// dump renders messages for a failure report.
func dump(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return b.String()
}

// hostEvents are the host events of a watch, in order.
func hostEvents(msgs []watchJSON) []commandEventJSON {
	var out []commandEventJSON
	for _, m := range msgs {
		if m.Event != nil {
			out = append(out, m.Event.Event)
		}
	}
	return out
}

// firstEvent returns the first event in state, if any.
func firstEvent(events []commandEventJSON, state string) (commandEventJSON, bool) {
	for _, e := range events {
		if e.State == state {
			return e, true
		}
	}
	return commandEventJSON{}, false
}
