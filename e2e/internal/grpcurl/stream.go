package grpcurl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
)

// Stream is a server-streaming method followed by a grpcurl running in the
// background; it ends when the server ends the stream, at its timeout, or
// when the control plane goes away.
type Stream struct {
	method string
	out    *fixture.LockedBuffer
	done   chan struct{}
	err    error
}

// Follow starts a server-streaming method (a full name) with a JSON body,
// logging the command line, bounded by timeout. It is stopped at the end
// of the test in any case.
func (c Client) Follow(t testing.TB, method, body string, timeout time.Duration) *Stream {
	t.Helper()
	args := []string{"-d", body, c.Addr, method}
	t.Logf("$ %s", Typed(args...))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	s := &Stream{method: method, out: &fixture.LockedBuffer{}, done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, c.Path, append(c.options(), args...)...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start grpcurl %s: %v", method, err)
	}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

// WatchCommand follows WatchCommand for a fleet command.
func (c Client) WatchCommand(t testing.TB, id string, timeout time.Duration) *Stream {
	t.Helper()
	return c.Follow(t, FleetService+"WatchCommand", fmt.Sprintf(`{"command_id": %q}`, id), timeout)
}

// WatchRollout follows WatchRollout for a rollout.
func (c Client) WatchRollout(t testing.TB, id string, timeout time.Duration) *Stream {
	t.Helper()
	return c.Follow(t, RolloutService+"WatchRollout", fmt.Sprintf(`{"rollout_id": %q}`, id), timeout)
}

// Done is closed when grpcurl has exited.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Err is grpcurl's exit error, once Done is closed.
func (s *Stream) Err() error { return s.err }

// Output is what grpcurl printed so far.
func (s *Stream) Output() string { return s.out.String() }

// Wait waits for the stream to end and returns grpcurl's output; grpcurl
// must exit 0 (the server ended the stream) and have printed nothing but
// a sequence of JSON messages.
func (s *Stream) Wait(t testing.TB) string {
	t.Helper()
	<-s.done
	out := s.out.String()
	if s.err != nil {
		t.Fatalf("grpcurl %s: %v\n%s", s.method, s.err, Abridge(out))
	}
	if err := trailingGarbage(out); err != nil {
		t.Fatalf("%s output: %v\n%s", s.method, err, Abridge(out))
	}
	return out
}

// Messages decodes the complete messages in a stream's output: grpcurl
// prints one JSON object per message, one after another. A message still
// being printed is left for later.
func Messages[M any](out string) []M {
	dec := json.NewDecoder(strings.NewReader(out))
	var msgs []M
	for {
		var m M
		if err := dec.Decode(&m); err != nil {
			return msgs // io.EOF, or a message still being written
		}
		msgs = append(msgs, m)
	}
}

// CommandMessages are the WatchCommand messages printed so far.
func (s *Stream) CommandMessages() []CommandWatch { return Messages[CommandWatch](s.Output()) }

// RolloutEvents are the WatchRollout events printed so far.
func (s *Stream) RolloutEvents() []RolloutEvent { return Messages[RolloutEvent](s.Output()) }

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

// FirstMessage is the first JSON message of a stream's output, as printed.
func FirstMessage(out string) string {
	var first json.RawMessage
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&first); err != nil {
		return fmt.Sprintf("(no message: %v)", err)
	}
	return string(first)
}

// Dump renders a value as indented JSON, for failure reports.
func Dump(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b) + "\n"
}
