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

// rolloutAPI is the full name of the rollout service.
const rolloutAPI = "flotilla.v1.RolloutService/"

// The parts of grpcurl's JSON rendering of the rollout API that the
// scenarios read (proto JSON: camelCase, enum names, zero values left out).

type rolloutJSON struct {
	ID      string `json:"id"`
	Image   string `json:"image"`
	State   string `json:"state"`
	Message string `json:"message"`
	Batches []struct {
		Index    int      `json:"index"`
		Canary   bool     `json:"canary"`
		AgentIDs []string `json:"agentIds"`
	} `json:"batches"`
	Hosts []struct {
		AgentID string `json:"agentId"`
		Step    string `json:"step"`
		Message string `json:"message"`
	} `json:"hosts"`
}

// rolloutEventJSON is one message of WatchRollout's stream.
type rolloutEventJSON struct {
	Event struct {
		At    time.Time `json:"at"`
		State *struct {
			State   string `json:"state"`
			Message string `json:"message"`
		} `json:"state"`
		Batch *struct {
			Index    int  `json:"index"`
			Started  bool `json:"started"`
			Finished bool `json:"finished"`
		} `json:"batch"`
		Host *struct {
			AgentID     string `json:"agentId"`
			Step        string `json:"step"`
			Message     string `json:"message"`
			RollingBack bool   `json:"rollingBack"`
		} `json:"host"`
	} `json:"event"`
}

// terminal reports whether a rollout in state s has ended.
func terminal(s string) bool {
	switch s {
	case "ROLLOUT_STATE_SUCCEEDED", "ROLLOUT_STATE_FAILED", "ROLLOUT_STATE_ROLLED_BACK",
		"ROLLOUT_STATE_ABORTED", "ROLLOUT_STATE_ROLLBACK_FAILED":
		return true
	}
	return false
}

// rollout calls a RolloutService method, logging the command line as an
// engineer would type it, and decodes the answer.
func (g grpcurl) rollout(t *testing.T, method, body string, out any) {
	t.Helper()
	t.Logf("$ grpcurl -d '%s' %s %s", body, g.addr, rolloutAPI+method)
	text, err := g.run("-d", body, g.addr, rolloutAPI+method)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if err := json.Unmarshal([]byte(text), out); err != nil {
		t.Fatalf("%s answered what is not JSON: %v\n%s", method, err, text)
	}
}

// getRollout is GetRollout.
func (g grpcurl) getRollout(id string) (rolloutJSON, error) {
	var resp struct {
		Rollout rolloutJSON `json:"rollout"`
	}
	err := g.call(rolloutAPI+"GetRollout", map[string]string{"rollout_id": id}, &resp)
	return resp.Rollout, err
}

// watchStream is a `grpcurl ... WatchRollout` running in the background.
type watchStream struct {
	out  *syncBuffer
	done chan struct{}
	err  error
}

// watchRollout starts WatchRollout; the stream ends with the rollout, at
// timeout, or when the control plane goes away.
func (g grpcurl) watchRollout(t *testing.T, id string, timeout time.Duration) *watchStream {
	t.Helper()
	args := []string{"-cacert", g.caFile, "-H", "authorization: Bearer " + g.token,
		"-d", fmt.Sprintf(`{"rollout_id": %q}`, id), g.addr, rolloutAPI + "WatchRollout"}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	w := &watchStream{out: &syncBuffer{}, done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, g.path, args...)
	cmd.Stdout, cmd.Stderr = w.out, w.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start grpcurl WatchRollout: %v", err)
	}
	go func() { w.err = cmd.Wait(); close(w.done) }()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// events decodes the messages printed so far; a message being printed is
// left for later.
func (w *watchStream) events() []rolloutEventJSON {
	dec := json.NewDecoder(strings.NewReader(w.out.String()))
	var out []rolloutEventJSON
	for dec.More() {
		var e rolloutEventJSON
		if dec.Decode(&e) != nil {
			break
		}
		out = append(out, e)
	}
	return out
}

// batchStarted reports whether the stream showed batch i start.
func (w *watchStream) batchStarted(i int) bool {
	for _, e := range w.events() {
		if b := e.Event.Batch; b != nil && b.Index == i && b.Started {
			return true
		}
	}
	return false
}

// wait waits for the stream to end and returns its events; grpcurl must
// exit 0, the server having ended the stream with the rollout.
func (w *watchStream) wait(t *testing.T) []rolloutEventJSON {
	t.Helper()
	<-w.done
	if w.err != nil {
		t.Fatalf("grpcurl WatchRollout: %v\n%s", w.err, w.out.String())
	}
	return w.events()
}
