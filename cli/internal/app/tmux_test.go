package app_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// liveViewInTerminal runs bin/flotilla in a real terminal (tmux) on a
// rollout in progress: the live view shows the health gate's countdown,
// redraws in place (one header however many events), and the exit code
// is the final state's.
func liveViewInTerminal(t *testing.T, p *plane) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("FLOTILLA_E2E") == "1" {
			t.Fatal("FLOTILLA_E2E=1 and tmux is missing (make deps installs it)")
		}
		t.Skip("tmux not installed (make deps installs it): the live view is not checked in a terminal")
	}
	bin := binary(t, "flotilla")
	gated := p.writeFile("gated.yaml", strings.Replace(serviceYAML("web", true, "30s"), "min_healthy_time: 1s", "min_healthy_time: 3s", 1))
	if r := p.run("service", "apply", "-f", gated); r.code != 0 {
		t.Fatalf("apply: exit %d", r.code)
	}
	defer p.run("service", "apply", "-f", p.writeFile("web.yaml", serviceYAML("web", true, "10s")))
	r := p.run("rollout", "start", "web", "--image", "registry.sim/app:v2-tty")
	if r.code != 0 {
		t.Fatalf("start: exit %d", r.code)
	}
	id := rolloutID(t, r.stdout)
	sock := filepath.Join(p.dir, "tmux.sock")
	args := []string{"-S", sock, "new-session", "-d", "-x", "150", "-y", "40"}
	for _, k := range []string{"FLOTILLA_ADDRESS", "FLOTILLA_TOKEN", "FLOTILLA_CA", "FLOTILLA_CONFIG"} {
		args = append(args, "-e", k+"="+p.env[k])
	}
	args = append(args, fmt.Sprintf("%s rollout watch %s; echo EXIT=$?; sleep 600", bin, id))
	if out, err := exec.Command(tmux, args...).CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(tmux, "-S", sock, "kill-server").Run() })
	capture := func() string {
		out, _ := exec.Command(tmux, "-S", sock, "capture-pane", "-p").Output()
		return string(out)
	}
	var gate string
	eventually(t, "the health gate's countdown, or the end", func() error {
		if s := capture(); strings.Contains(s, "health gate: needs 3s healthy, deadline in") || strings.Contains(s, "EXIT=") {
			gate = s
			return nil
		}
		return fmt.Errorf("pane:\n%s", capture())
	})
	t.Logf("the live view during a health gate:\n%s", strings.TrimRight(gate, "\n"))
	var final string
	eventually(t, "the command's end", func() error {
		if final = capture(); strings.Contains(final, "EXIT=") {
			return nil
		}
		return fmt.Errorf("pane:\n%s", final)
	})
	t.Logf("the terminal at the end:\n%s", strings.TrimRight(final, "\n"))
	if !strings.Contains(gate, "deadline in") {
		t.Errorf("the health gate's countdown was never seen")
	}
	if n := strings.Count(final, "rollout "+id+"  web"); n != 1 {
		t.Errorf("%d live-view headers in the terminal; want 1 (redrawn in place)", n)
	}
	if !strings.Contains(final, "EXIT=0") || !strings.Contains(final, "rollout "+id+" SUCCEEDED") {
		t.Errorf("the terminal does not end SUCCEEDED with EXIT=0")
	}
}
