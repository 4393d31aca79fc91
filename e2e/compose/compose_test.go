package compose

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// demoImages are the images the compose file runs.
var demoImages = []string{
	"flotilla-controlplane:latest", "flotilla-agent:latest",
	"flotilla-demo-app:latest", "flotilla-demo-nginx:latest", "flotilla-demo-registry:latest",
}

// project is one docker-compose project of the demo's file.
type project struct {
	bin, file, name string
	env             []string
}

// composeFile is deploy/compose/docker-compose.yml of this checkout.
func composeFile() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "compose", "docker-compose.yml")
}

// run runs docker-compose with the project's name, file and environment.
func (p project) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, append([]string{"-p", p.name, "-f", p.file}, args...)...)
	cmd.Env = append(os.Environ(), p.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker-compose %s: %w\n%s", strings.Join(args, " "), err, grpcurl.AbridgeLines(string(out), 40))
	}
	return string(out), nil
}

// newProject checks what the demo needs (Docker, docker-compose, the
// images, grpcurl: it skips, or fails under FLOTILLA_E2E=1, without them)
// and returns a project named after the test's run ID on free ports,
// taken down with its volumes when the test ends.
func newProject(t *testing.T) (project, *fixture.Docker) {
	t.Helper()
	d := fixture.NewDocker(t)
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		fixture.Require(t, "docker-compose is not in PATH (apt-get install docker-compose): %v", err)
	}
	for _, img := range demoImages {
		if !d.HasImage(t, img) {
			fixture.Require(t, "image %s is not in the engine: run `make images demo-images`", img)
		}
	}
	p := project{bin: bin, file: composeFile(), name: "flotillatest" + d.RunID, env: []string{"FLOTILLA_DEMO_ID=" + d.RunID}}
	for _, v := range []string{"GRPC", "METRICS", "HTTP", "REGISTRY"} {
		p.env = append(p.env, fmt.Sprintf("FLOTILLA_DEMO_%s_PORT=%d", v, fixture.FreePort(t)))
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := p.run(time.Minute, "logs", "--no-color", "--tail", "200")
			t.Logf("docker-compose logs:\n%s", out)
		}
		if out, err := p.run(3*time.Minute, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Errorf("taking the demo down: %v\n%s", err, out)
		}
	})
	return p, d
}

// port is the host port the test gave FLOTILLA_DEMO_<name>_PORT.
func (p project) port(t *testing.T, name string) int {
	t.Helper()
	for _, kv := range p.env {
		if v, ok := strings.CutPrefix(kv, "FLOTILLA_DEMO_"+name+"_PORT="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("no port %s", name)
	return 0
}

// copyFile reads one file out of a container.
func copyFile(d *fixture.Docker, id, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := d.Client.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, fmt.Errorf("copy %s from container %s: %w", path, id, err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("copy %s from container %s: no regular file in the archive: %w", path, id, err)
		}
		if h.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

// pushDemoApp pushes the demo application's image to the demo's registry
// as ref, and removes ref from the engine (a tag of the demo image, which
// stays) now and, pulled again by the agents, when the test ends.
func pushDemoApp(t *testing.T, d *fixture.Docker, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	untag := func() {
		_, _ = d.Client.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{})
	}
	t.Cleanup(untag)
	if _, err := d.Client.ImageTag(ctx, client.ImageTagOptions{Source: "flotilla-demo-app:latest", Target: ref}); err != nil {
		t.Fatalf("tag %s: %v", ref, err)
	}
	res, err := d.Client.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: "e30="}) // base64("{}"): no credentials
	if err == nil {
		err = res.Wait(ctx)
	}
	if err != nil {
		t.Fatalf("push %s to the demo registry: %v", ref, err)
	}
	untag()
}

// TestDemoStartsOnFirstUp runs `docker-compose up -d` on the demo's file
// once, with no value from a control plane: both agents must register
// with the token and CA the control plane writes to the shared volume and
// be connected, Nginx must answer with the demo application, and both
// agents must pull from the demo's registry, the one they allow.
func TestDemoStartsOnFirstUp(t *testing.T) {
	grpcurlBin := fixture.Binary(t, "grpcurl")
	p, d := newProject(t)
	if out, err := p.run(5*time.Minute, "up", "-d"); err != nil {
		t.Fatalf("the first up failed: %v\n%s", err, out)
	}
	out, err := p.run(time.Minute, "ps", "-q", "controlplane")
	if err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("the control plane's container: %q, %v", out, err)
	}
	cp := strings.TrimSpace(out)

	g := grpcurl.Client{Path: grpcurlBin, Addr: fmt.Sprintf("127.0.0.1:%d", p.port(t, "GRPC")), CAFile: filepath.Join(t.TempDir(), "ca.crt")}
	fixture.Eventually(t, time.Minute, "the control plane's CA and admin token", func() error {
		ca, err := copyFile(d, cp, "/var/lib/flotilla-bootstrap/ca.crt")
		if err != nil {
			return err
		}
		token, err := copyFile(d, cp, "/var/lib/flotilla/admin.token")
		if err != nil {
			return err
		}
		g.Token = strings.TrimSpace(string(token))
		return os.WriteFile(g.CAFile, ca, 0o600)
	})
	fixture.Eventually(t, 2*time.Minute, "both demo agents connected", func() error {
		agents, err := g.ListAgents("env=demo")
		if err != nil {
			return err
		}
		var connected []string
		for _, a := range agents {
			if a.State == "AGENT_STATE_CONNECTED" {
				connected = append(connected, a.Hostname)
			}
		}
		slices.Sort(connected)
		if !slices.Equal(connected, []string{"demo-host-1", "demo-host-2"}) {
			return fmt.Errorf("connected: %v of %d agents", connected, len(agents))
		}
		return nil
	})
	ref := fmt.Sprintf("localhost:%d/demo-app:%s", p.port(t, "REGISTRY"), d.RunID)
	pushDemoApp(t, d, ref)
	fc, _, _ := g.RunToEnd(t, `{"selector": "env=demo", "spec": {"pull": {"image": "`+ref+`"}}, "reason": "e2e compose"}`, 2*time.Minute)
	if fc.State != "FLEET_COMMAND_STATE_SUCCEEDED" || len(fc.Hosts) != 2 {
		t.Fatalf("pull from the demo registry: %s on %d hosts, want succeeded on 2: %+v", fc.State, len(fc.Hosts), fc.Hosts)
	}

	url := fmt.Sprintf("http://127.0.0.1:%d/", p.port(t, "HTTP"))
	fixture.Eventually(t, time.Minute, "the demo application through Nginx", func() error {
		body, err := fixture.Get(url)
		if err != nil {
			return err
		}
		if strings.TrimSpace(body) != "v1" {
			return fmt.Errorf("%s answered %q, want v1", url, body)
		}
		return nil
	})
}
