package docker

// The fixture for tests against the real Docker engine: a local
// distribution registry on 127.0.0.1, serving images of the test
// application (e2e/testapp) that are built FROM scratch here, pushed, and
// removed locally again so that every pull is a real one.
//
// It is started once per test binary, on first use, and torn down by
// TestMain. Everything it or a test creates in Docker carries the label
// flotilla.test=<run id>. Other packages' tests (rollouts) copy this file.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

// testLabel marks everything the tests create in Docker.
const testLabel = "flotilla.test"

// testImageRepo is the repository of the test application in the registry.
const testImageRepo = "flotilla-test/app"

// testImageVariants are the images the fixture builds: their tag, and the
// ENV lines that make the one binary play that role. "broken" loses its
// config blob in the registry after the push, so that its pull fails
// halfway, with the error in the engine's progress stream.
var testImageVariants = map[string]string{
	"v1":     "ENV APP_VERSION=v1",
	"v2":     "ENV APP_VERSION=v2",
	"crash":  "ENV APP_VERSION=v3 APP_MODE=crash",
	"broken": "ENV APP_VERSION=broken",
}

// fixture is the shared Docker test environment.
type fixture struct {
	runID    string
	docker   *client.Client
	registry string // 127.0.0.1:<port>
	dir      string // temporary files: registry storage, build context
	regProc  *exec.Cmd
	regDone  chan struct{}
}

var shared struct {
	once sync.Once
	fx   *fixture
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.fx != nil {
		shared.fx.close()
	}
	os.Exit(code)
}

// requireDocker returns the shared fixture, starting it on first use. A
// missing dependency skips the test, or fails it under FLOTILLA_E2E=1.
func requireDocker(t testing.TB) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Docker and the local registry; skipped with -short")
	}
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		shared.fx, shared.err = startFixture(ctx)
	})
	if shared.err != nil {
		if os.Getenv("FLOTILLA_E2E") == "1" {
			t.Fatalf("Docker test fixture: %v", shared.err)
		}
		t.Skipf("Docker test fixture unavailable (set FLOTILLA_E2E=1 to make this a failure): %v", shared.err)
	}
	return shared.fx
}

// startFixture connects to the engine, starts the registry and publishes
// the test images. On error it cleans up what it made.
func startFixture(ctx context.Context) (_ *fixture, err error) {
	fx := &fixture{runID: newRunID()}
	fx.docker, err = client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := fx.docker.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		_ = fx.docker.Close()
		return nil, fmt.Errorf("no Docker engine answers (DOCKER_HOST or /var/run/docker.sock): %w", err)
	}
	defer func() {
		if err != nil {
			fx.close()
		}
	}()
	if fx.dir, err = os.MkdirTemp("", "flotilla-docker-test-"); err != nil {
		return nil, err
	}
	if err := fx.startRegistry(ctx); err != nil {
		return nil, err
	}
	app, err := buildTestApp(ctx, fx.dir)
	if err != nil {
		return nil, err
	}
	if err := fx.buildAll(ctx, app); err != nil {
		return nil, err
	}
	for tag := range testImageVariants {
		if err := fx.push(ctx, tag); err != nil {
			return nil, err
		}
	}
	if err := fx.breakImage(ctx, "broken"); err != nil {
		return nil, err
	}
	for tag := range testImageVariants {
		if err := fx.removeImage(ctx, fx.image(tag)); err != nil {
			return nil, err
		}
	}
	return fx, nil
}

// breakImage deletes the config blob of a pushed variant from the
// registry's storage. The image's ID is the digest of its config.
func (fx *fixture) breakImage(ctx context.Context, tag string) error {
	img, err := fx.docker.ImageInspect(ctx, fx.image(tag))
	if err != nil {
		return fmt.Errorf("inspect %s: %w", fx.image(tag), err)
	}
	hex, ok := strings.CutPrefix(img.ID, "sha256:")
	if !ok || len(hex) < 2 {
		return fmt.Errorf("image ID %q is not a sha256 digest", img.ID)
	}
	blob := filepath.Join(fx.dir, "registry-data", "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex)
	if err := os.RemoveAll(blob); err != nil {
		return fmt.Errorf("break %s: %w", fx.image(tag), err)
	}
	return nil
}

func newRunID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// image is the registry reference of a test image variant.
func (fx *fixture) image(tag string) string {
	return fmt.Sprintf("%s/%s:%s", fx.registry, testImageRepo, tag)
}

// labels are the labels every test object carries, plus extra ones.
func (fx *fixture) labels(extra map[string]string) map[string]string {
	out := map[string]string{testLabel: fx.runID}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// binDir is where `make tools` puts the registry binary.
func binDir() string {
	if d := os.Getenv("FLOTILLA_BIN_DIR"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "bin")
}

// startRegistry runs the distribution registry on a free loopback port
// with its storage in the fixture's directory.
func (fx *fixture) startRegistry(ctx context.Context) error {
	bin := filepath.Join(binDir(), "registry")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("registry binary not found at %s (run `make tools` or set FLOTILLA_BIN_DIR): %w", bin, err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	fx.registry = fmt.Sprintf("127.0.0.1:%d", port)
	cfg := filepath.Join(fx.dir, "registry.yml")
	// The address and storage come from the environment; the file only
	// says which version of the configuration format this is.
	if err := os.WriteFile(cfg, []byte("version: 0.1\nstorage:\n  filesystem: {}\nhttp:\n  addr: :5000\n"), 0o600); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(fx.dir, "registry.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Env = append(os.Environ(),
		"REGISTRY_HTTP_ADDR="+fx.registry,
		"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="+filepath.Join(fx.dir, "registry-data"),
		"REGISTRY_LOG_LEVEL=warn",
		"OTEL_SDK_DISABLED=true", "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("start registry: %w", err)
	}
	fx.regProc, fx.regDone = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(fx.regDone)
	}()
	return fx.waitRegistry(ctx)
}

// waitRegistry waits, bounded, for the registry's /v2/ to answer.
func (fx *fixture) waitRegistry(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+fx.registry+"/v2/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-fx.regDone:
			out, _ := os.ReadFile(filepath.Join(fx.dir, "registry.log"))
			return fmt.Errorf("registry exited at start: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("registry at %s does not answer /v2/: %v", fx.registry, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// buildTestApp compiles e2e/testapp as a static Linux binary.
func buildTestApp(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "..", "e2e", "testapp")
	out := filepath.Join(dir, "testapp")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the test application in %s: %v: %s", src, err, b)
	}
	return out, nil
}

// buildAll builds every variant before any is pushed and removed. The
// variants differ only in their last instructions: once the first is
// built, the builder's cache serves the common steps to the others, which
// then build in parallel (each step is a commit, slow on some storage
// drivers).
func (fx *fixture) buildAll(ctx context.Context, app string) error {
	tags := slices.Sorted(maps.Keys(testImageVariants))
	if err := fx.build(ctx, app, tags[0], testImageVariants[tags[0]]); err != nil {
		return err
	}
	errs := make([]error, len(tags))
	var wg sync.WaitGroup
	for i, tag := range tags[1:] {
		wg.Go(func() { errs[i] = fx.build(ctx, app, tag, testImageVariants[tag]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// build builds one variant of the test image, tagged for the registry.
func (fx *fixture) build(ctx context.Context, app, tag, env string) error {
	ref := fx.image(tag)
	// The run ID goes into the application's layer, so that no other
	// image on the host (another test run, another package's fixture)
	// shares it and every pull downloads it.
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY testapp run-id /\nEXPOSE 8080\nENTRYPOINT [\"/testapp\"]\n%s\n", env)
	buildCtx, err := tarContext(map[string]string{"Dockerfile": dockerfile, "run-id": fx.runID + "\n"}, map[string]string{"testapp": app})
	if err != nil {
		return err
	}
	res, err := fx.docker.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true,
		Labels:  fx.labels(map[string]string{"org.opencontainers.image.version": tag}),
		Version: build.BuilderV1, // the classic builder: the engine here has no BuildKit session
	})
	if err != nil {
		return fmt.Errorf("build %s: %w", ref, err)
	}
	if err := drainJSON(ctx, res.Body); err != nil {
		return fmt.Errorf("build %s: %w", ref, err)
	}
	return nil
}

// push pushes a built variant to the registry.
func (fx *fixture) push(ctx context.Context, tag string) error {
	ref := fx.image(tag)
	res, err := fx.docker.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: "e30="}) // base64("{}"): no credentials
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	if err := res.Wait(ctx); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// drainJSON reads a build's JSON message stream and returns its error.
func drainJSON(ctx context.Context, body io.ReadCloser) error {
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if i := bytes.Index(b, []byte(`"errorDetail"`)); i >= 0 {
		return errors.New(string(b[i:]))
	}
	return ctx.Err()
}

// tarContext makes a build context of inline files and files on disk.
func tarContext(inline, onDisk map[string]string) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte, mode int64) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for name, s := range inline {
		if err := add(name, []byte(s), 0o644); err != nil {
			return nil, err
		}
	}
	for name, path := range onDisk {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if err := add(name, data, 0o755); err != nil {
			return nil, err
		}
	}
	return &buf, tw.Close()
}

// removeImage removes a local image by reference; absent is fine.
func (fx *fixture) removeImage(ctx context.Context, ref string) error {
	_, err := fx.docker.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	if err != nil && !strings.Contains(strings.ToLower(err.Error()), "no such image") {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// close removes what the run left in Docker (by label), stops the
// registry and deletes the temporary files.
func (fx *fixture) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if fx.docker != nil {
		fx.sweep(ctx)
		_ = fx.docker.Close()
	}
	if fx.regProc != nil && fx.regProc.Process != nil {
		_ = fx.regProc.Process.Kill()
		<-fx.regDone
	}
	if fx.dir != "" {
		_ = os.RemoveAll(fx.dir)
	}
}

// sweep removes containers, networks, volumes and images labelled with
// this run's ID: a safety net behind the tests' own cleanups.
func (fx *fixture) sweep(ctx context.Context) {
	f := make(client.Filters).Add("label", testLabel+"="+fx.runID)
	if list, err := fx.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f}); err == nil {
		for _, c := range list.Items {
			_, _ = fx.docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		}
	}
	if list, err := fx.docker.NetworkList(ctx, client.NetworkListOptions{Filters: f}); err == nil {
		for _, n := range list.Items {
			_, _ = fx.docker.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
		}
	}
	if list, err := fx.docker.VolumeList(ctx, client.VolumeListOptions{Filters: f}); err == nil {
		for _, v := range list.Items {
			_, _ = fx.docker.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true})
		}
	}
	if list, err := fx.docker.ImageList(ctx, client.ImageListOptions{All: true, Filters: f}); err == nil {
		for _, img := range list.Items {
			_, _ = fx.docker.ImageRemove(ctx, img.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
	}
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
