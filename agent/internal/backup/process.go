package backup

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long pg_dump and pg_restore get to exit after SIGTERM
// (pg_dump then cancels its query on the server) before they are killed.
const stopGrace = 10 * time.Second

// strippedEnv are variables a child must not inherit: the configuration is
// the only source of where to connect and with which credentials, so an
// ambient PGHOST, PGHOSTADDR, PGPASSWORD or service file cannot redirect a
// backup or leak into it. PGCLUSTER steers Debian's pg_wrapper. The locale
// variables are replaced by LC_ALL=C so that messages parse and read the same
// on every host.
var strippedEnv = map[string]bool{
	"PGHOST": true, "PGHOSTADDR": true, "PGPORT": true, "PGDATABASE": true,
	"PGUSER": true, "PGPASSWORD": true, "PGPASSFILE": true, "PGSERVICE": true,
	"PGSERVICEFILE": true, "PGOPTIONS": true, "PGSSLMODE": true, "PGREQUIRESSL": true,
	"PGCLUSTER": true, "PGAPPNAME": true,
	"LC_ALL": true, "LC_MESSAGES": true, "LANG": true, "LANGUAGE": true,
}

// childEnv is the agent's environment without strippedEnv, plus extra
// ("KEY=value") entries.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strippedEnv[k] {
			env = append(env, kv)
		}
	}
	env = append(env, "LC_ALL=C")
	return append(env, extra...)
}

// terminateOnCancel makes a cancelled context stop cmd with SIGTERM first
// (exec.CommandContext's default is SIGKILL, which leaves pg_dump's query
// running on the server) and SIGKILL after stopGrace.
func terminateOnCancel(cmd *exec.Cmd) {
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
}

// tailWriter keeps the last max bytes written to it: enough of a child's
// stderr to explain a failure, bounded however much it prints.
type tailWriter struct {
	max int
	buf []byte
	cut bool // the first line in buf lost its beginning
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.cut = w.buf[over-1] != '\n'
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

// lastLines returns at most n of the last non-empty lines, joined by "; ".
// A line cut by the byte limit is dropped rather than shown half.
func (w *tailWriter) lastLines(n int) string {
	lines := strings.Split(string(w.buf), "\n")
	if w.cut {
		lines = lines[1:]
	}
	var kept []string
	for i := len(lines) - 1; i >= 0 && len(kept) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			kept = append(kept, l)
		}
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}
	return strings.Join(kept, "; ")
}

// stderrTailBytes bounds what is kept of a child's stderr.
const stderrTailBytes = 8 << 10

// stderrLines is how many of its last lines an error quotes.
const stderrLines = 5
