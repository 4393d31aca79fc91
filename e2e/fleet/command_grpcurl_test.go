package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// fleetAPI is the full name of the fleet service.
const fleetAPI = "flotilla.v1.FleetService/"

// The parts of grpcurl's JSON rendering of the command API that the
// scenarios read (proto JSON: camelCase, enum names, 64-bit integers as
// strings, durations as "1.5s", zero values left out).

type fleetCommandJSON struct {
	ID    string            `json:"id"`
	State string            `json:"state"`
	Hosts []hostCommandJSON `json:"hosts"`
}

type hostCommandJSON struct {
	AgentID    string    `json:"agentId"`
	State      string    `json:"state"`
	Message    string    `json:"message"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	Result     struct {
		Backup *backupResultJSON `json:"backup"`
	} `json:"result"`
}

// backupResultJSON is flotilla.v1.BackupResult.
type backupResultJSON struct {
	Database        string `json:"database"`
	Path            string `json:"path"`
	ManifestPath    string `json:"manifestPath"`
	SizeBytes       uint64 `json:"sizeBytes,string"`
	SHA256          string `json:"sha256"`
	Duration        string `json:"duration"`
	PgDumpVersion   string `json:"pgDumpVersion"`
	ServerVersion   string `json:"serverVersion"`
	VerifiedEntries int    `json:"verifiedEntries"`
}

// commandWatchJSON is one message of WatchCommand's stream: a snapshot of
// the command or one host's event.
type commandWatchJSON struct {
	Snapshot *fleetCommandJSON `json:"snapshot"`
	Event    *struct {
		AgentID string `json:"agentId"`
		Event   struct {
			State    string `json:"state"`
			Progress *struct {
				Current uint64 `json:"current,string"`
			} `json:"progress"`
		} `json:"event"`
	} `json:"event"`
}

// runCommandToEnd calls RunCommand with body, logging the command line as
// an engineer would type it, follows the command with WatchCommand until
// the server ends the stream with the command, and returns the final
// snapshot, every message the stream printed, and the time from calling
// RunCommand to the stream's end.
func (g grpcurl) runCommandToEnd(t *testing.T, body string, timeout time.Duration) (fleetCommandJSON, []commandWatchJSON, time.Duration) {
	t.Helper()
	began := time.Now()
	t.Logf("$ grpcurl -d '%s' %s %s", body, g.addr, fleetAPI+"RunCommand")
	text, err := g.run("-d", body, g.addr, fleetAPI+"RunCommand")
	if err != nil {
		t.Fatalf("RunCommand: %v", err)
	}
	var started struct {
		Command fleetCommandJSON `json:"command"`
	}
	if err := json.Unmarshal([]byte(text), &started); err != nil || started.Command.ID == "" {
		t.Fatalf("RunCommand answered no command (%v):\n%s", err, text)
	}
	id := started.Command.ID

	watch := fmt.Sprintf(`{"command_id": %q}`, id)
	t.Logf("$ grpcurl -d '%s' %s %s", watch, g.addr, fleetAPI+"WatchCommand")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, g.path, "-cacert", g.caFile, "-H", "authorization: Bearer "+g.token,
		"-d", watch, g.addr, fleetAPI+"WatchCommand").CombinedOutput()
	took := time.Since(began)
	if err != nil {
		t.Fatalf("grpcurl WatchCommand %s (ended after %s): %v\n%s", id, took.Round(time.Millisecond), err, out)
	}
	msgs, err := decodeCommandWatch(string(out))
	if err != nil {
		t.Fatalf("WatchCommand %s printed what is not a sequence of messages: %v\n%s", id, err, out)
	}
	if len(msgs) == 0 || msgs[len(msgs)-1].Snapshot == nil {
		t.Fatalf("WatchCommand %s did not end with a snapshot:\n%s", id, out)
	}
	final := *msgs[len(msgs)-1].Snapshot
	if final.ID != id || final.State == "" || final.State == "FLEET_COMMAND_STATE_RUNNING" {
		t.Fatalf("WatchCommand %s ended with command %s in state %q:\n%s", id, final.ID, final.State, out)
	}
	return final, msgs, took
}

// decodeCommandWatch decodes grpcurl's output of a stream: one JSON object
// per message, one after another.
func decodeCommandWatch(out string) ([]commandWatchJSON, error) {
	dec := json.NewDecoder(strings.NewReader(out))
	var msgs []commandWatchJSON
	for dec.More() {
		var m commandWatchJSON
		if err := dec.Decode(&m); err != nil {
			return msgs, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}
