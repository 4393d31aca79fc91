package docker

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

func candidateSpec(name, image string, port, candidatePort int) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_StartCandidate{StartCandidate: &flotillav1.StartCandidateCommand{
		Container: name, Image: image, Port: int32(port), CandidatePort: int32(candidatePort),
		MinHealthyTime: durationpb.New(500 * time.Millisecond), HealthyDeadline: durationpb.New(20 * time.Second)}}}
}

func blueGreenSpec(name string, action flotillav1.BlueGreenAction) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_BlueGreen{BlueGreen: &flotillav1.BlueGreenCommand{Container: name, Action: action}}}
}

// TestCandidatePromoteRevertRetire: a candidate starts beside the live
// container on the other port, checked on its own health; PROMOTE gives
// it the name while the old one keeps running, REVERT gives the name back
// to the very same old container, and RETIRE removes the previous one.
func TestCandidatePromoteRevertRetire(t *testing.T) {
	fx := requireDocker(t)
	e0 := newTestExecutor(t, fx, nil)
	pull(t, e0, fx.image("v1"))
	pull(t, e0, fx.image("v2"))
	a := fx.createApp(t, "bluegreen", appSpec{image: fx.image("v1"), managed: true, start: true})
	e := newTestExecutor(t, fx, func(c *Config) { c.HealthURL = a.url("/health") })
	waitBody(t, a.url("/"), "v1")
	other, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	otherURL := fmt.Sprintf("http://127.0.0.1:%d/", other)

	res, err := e.Execute(testContext(t), candidateSpec(a.name, fx.image("v2"), a.hostPort, other), nil)
	if err != nil {
		t.Fatalf("start_candidate: %v", err)
	}
	c := res.GetCandidate()
	if c.GetCandidate() != a.name+nextSuffix || c.GetPreviousImage() != fx.image("v1") || c.GetPreviousContainerId() != a.id ||
		!strings.Contains(c.GetHealthUrl(), fmt.Sprint(other)) {
		t.Fatalf("candidate result %v", c)
	}
	waitBody(t, otherURL, "v2")
	waitBody(t, a.url("/"), "v1")
	list, err := e.ManagedContainers(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, mc := range list {
		if strings.HasPrefix(mc.GetName(), a.name) && (mc.GetName() != a.name || len(mc.GetHostPorts()) != 1 || mc.GetHostPorts()[0] != int32(a.hostPort)) {
			t.Errorf("managed containers report %v; want %s alone, on host port %d", mc, a.name, a.hostPort)
		}
	}

	run := func(action flotillav1.BlueGreenAction) {
		t.Helper()
		if _, err := e.Execute(testContext(t), blueGreenSpec(a.name, action), nil); err != nil {
			t.Fatalf("%s: %v", action, err)
		}
	}
	run(flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_PROMOTE)
	if got := fx.inspect(t, a.name); got.ID != c.GetContainerId() {
		t.Fatalf("after PROMOTE %s is %s, want the candidate %s", a.name, got.ID, c.GetContainerId())
	}
	waitBody(t, a.url("/"), "v1")                             // the previous container still serves
	run(flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_PROMOTE) // done already
	run(flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_REVERT)
	if got := fx.inspect(t, a.name); got.ID != a.id || !got.State.Running {
		t.Fatalf("after REVERT %s is %s (running %v), want the original %s running", a.name, got.ID, got.State.Running, a.id)
	}
	if fx.exists(t, a.name+nextSuffix) || fx.exists(t, a.name+previousSuffix) || answers(otherURL) {
		t.Fatalf("after REVERT a companion container is left")
	}
	if got := e.HealthPort(); got != 0 {
		t.Errorf("after REVERT HealthPort() = %d, want 0 (health.url's own)", got)
	}

	if _, err := e.Execute(testContext(t), candidateSpec(a.name, fx.image("v2"), a.hostPort, other), nil); err != nil {
		t.Fatalf("second start_candidate: %v", err)
	}
	run(flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_PROMOTE)
	run(flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_RETIRE)
	if fx.exists(t, a.name+previousSuffix) || answers(a.url("/")) {
		t.Fatalf("after RETIRE the previous container is left")
	}
	waitBody(t, otherURL, "v2")
	if got := fx.inspect(t, a.name); got.Config.Image != fx.image("v2") {
		t.Fatalf("after RETIRE %s runs %s", a.name, got.Config.Image)
	}
}

// TestCandidateFailureLeavesLiveAlone: a candidate that crashes is removed
// with its logs in the error; the live container never stopped.
func TestCandidateFailureLeavesLiveAlone(t *testing.T) {
	fx := requireDocker(t)
	e0 := newTestExecutor(t, fx, nil)
	pull(t, e0, fx.image("v1"))
	pull(t, e0, fx.image("crash"))
	a := fx.createApp(t, "bgcrash", appSpec{image: fx.image("v1"), managed: true, start: true})
	e := newTestExecutor(t, fx, func(c *Config) { c.HealthURL = a.url("/health") })
	waitBody(t, a.url("/"), "v1")
	other, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Execute(testContext(t), candidateSpec(a.name, fx.image("crash"), a.hostPort, other), nil)
	if err == nil || !strings.Contains(err.Error(), "live container was not touched") || !strings.Contains(err.Error(), "APP_MODE=crash") {
		t.Fatalf("start_candidate of a crashing image: %v", err)
	}
	if fx.exists(t, a.name+nextSuffix) {
		t.Fatalf("the failed candidate is left")
	}
	if got := fx.inspect(t, a.name); got.ID != a.id || !got.State.Running || got.RestartCount != 0 {
		t.Fatalf("the live container was touched: %s running %v restarts %d", got.ID, got.State.Running, got.RestartCount)
	}
	// A health URL on another port cannot judge the candidate.
	e2 := newTestExecutor(t, fx, func(c *Config) { c.HealthURL = "http://127.0.0.1:1/health" })
	if _, err := e2.Execute(testContext(t), candidateSpec(a.name, fx.image("v1"), a.hostPort, other), nil); err == nil || !strings.Contains(err.Error(), "health.url") {
		t.Fatalf("start_candidate with health.url on another port: %v", err)
	}
}

func answers(url string) bool {
	hc := &http.Client{Timeout: time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return true
}
