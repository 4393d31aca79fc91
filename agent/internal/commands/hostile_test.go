package commands

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"go.uber.org/zap/zapcore"
)

func TestOversizedIDIsDroppedUnanswered(t *testing.T) {
	h := newHarness(t)
	id := strings.Repeat("x", MaxCommandIDBytes+1)
	h.runner.Handle(pullCmd(id, epoch.Add(time.Hour)))
	h.stop()
	h.noMoreEvents()
	if n := h.exec.executions.Load(); n != 0 {
		t.Errorf("executed %d times, want never", n)
	}
	logs := h.logs.FilterMessage("command with an oversized ID dropped: the control plane sent an invalid command").All()
	if len(logs) != 1 || logs[0].Level != zapcore.ErrorLevel {
		t.Fatalf("logged %v, want one error", logs)
	}
	if p, _ := logs[0].ContextMap()["command_id_prefix"].(string); len(p) > 64 {
		t.Errorf("logged %d bytes of the ID, want at most 64", len(p))
	}
}

func TestLongestIDIsAccepted(t *testing.T) {
	h := newHarness(t)
	id := strings.Repeat("x", MaxCommandIDBytes)
	h.runner.Handle(pullCmd(id, epoch.Add(time.Hour)))
	h.expect(id, accepted, running, succeeded)
}

func TestRefusalOfAHugeParameterIsBounded(t *testing.T) {
	h := newHarness(t)
	huge := strings.Repeat("é", 1<<20) // 2 MiB, and cut inside a character
	h.exec.validate = func(spec *flotillav1.CommandSpec) error {
		return executor.Reject("pull.image: %q is not a valid image reference", spec.GetPull().GetImage())
	}
	cmd := pullCmd("c1", epoch.Add(time.Hour))
	cmd.GetSpec().GetPull().Image = huge
	h.runner.Handle(cmd)
	ev := h.expect("c1", rejected)
	msg := ev.GetMessage()
	if len(msg) > MaxEventMessageBytes || !utf8.ValidString(msg) || !strings.HasSuffix(msg, truncated) ||
		!strings.HasPrefix(msg, "pull.image: ") {
		t.Errorf("message of %d bytes (valid UTF-8: %v) ending %q, want at most %d, valid, marked as cut",
			len(msg), utf8.ValidString(msg), msg[max(len(msg)-20, 0):], MaxEventMessageBytes)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{strings.Repeat("a", 30), 20, strings.Repeat("a", 20-len(truncated)) + truncated},
		{"ab" + strings.Repeat("é", 20), len(truncated) + 3, "ab" + truncated}, // not inside é
		{"anything", 2, truncated},
	}
	for _, tt := range tests {
		got := truncate(tt.in, tt.n)
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
