package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"flotilla.dev/e2e/internal/fixture"
)

// The deploy assets these tests check, relative to e2e/.
var (
	systemdDir     = filepath.Join("..", "deploy", "systemd")
	userDataPath   = filepath.Join("..", "deploy", "cloud-init", "agent-user-data.yaml")
	unitNames      = []string{"flotilla-agent.service", "flotilla-controlplane.service"}
	postgresDropIn = filepath.Join(systemdDir, "flotilla-controlplane.service.d", "postgres.conf.example")
)

// maxExposure is each unit's `systemd-analyze security` score as
// docs/operations.md ("systemd units") states it; a change that loosens a
// unit fails here until the docs say why.
var maxExposure = map[string]float64{
	"flotilla-agent.service":        2.5,
	"flotilla-controlplane.service": 1.1,
}

// tool returns the path of a command-line tool, or skips (fails under
// FLOTILLA_E2E=1) when it is not installed.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		fixture.Require(t, "%s not installed (apt-get install %s)", name, pkg)
	}
	return path
}

// unitRoot builds a scratch root for `systemd-analyze verify --root`: the
// host's own units (sysinit.target and the rest the units depend on), the
// units under test in /etc/systemd/system with the PostgreSQL drop-in
// installed as the docs say, and a dummy executable for each ExecStart=, so
// that verify checks the units as an install would see them.
func unitRoot(t *testing.T, units map[string][]byte) string {
	t.Helper()
	root := t.TempDir()
	hostUnits := "/usr/lib/systemd/system"
	if _, err := os.Stat(hostUnits); err != nil {
		hostUnits = "/lib/systemd/system"
	}
	copyTree(t, hostUnits, filepath.Join(root, "usr", "lib", "systemd", "system"))
	for _, bin := range []string{"flotilla-agent", "flotilla-controlplane"} {
		writeFileT(t, filepath.Join(root, "usr", "local", "bin", bin), []byte("#!/bin/sh\n"), 0o755)
	}
	etc := filepath.Join(root, "etc", "systemd", "system")
	for name, content := range units {
		writeFileT(t, filepath.Join(etc, name), content, 0o644)
	}
	return root
}

// copyTree copies regular files and symbolic links (as links) from src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

func writeFileT(t *testing.T, path string, content []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, mode); err != nil {
		t.Fatal(err)
	}
}

func readFileT(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// shippedUnits is what an install puts in /etc/systemd/system: both units
// and the PostgreSQL drop-in.
func shippedUnits(t *testing.T) map[string][]byte {
	units := map[string][]byte{
		"flotilla-controlplane.service.d/postgres.conf": readFileT(t, postgresDropIn),
	}
	for _, name := range unitNames {
		units[name] = readFileT(t, filepath.Join(systemdDir, name))
	}
	return units
}

// TestSystemdUnitsVerify runs `systemd-analyze verify` on both units (with
// the drop-in) and requires silence: verify exits 0 on an unknown key and
// only warns, so any output is a failure. The broken variants prove that
// the check can fail.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze := tool(t, "systemd-analyze", "systemd")
	tests := []struct {
		name   string
		edit   func(map[string][]byte)
		wantOK bool
	}{
		{"as shipped", func(map[string][]byte) {}, true},
		{"unknown key", func(u map[string][]byte) {
			u["flotilla-agent.service"] = bytes.Replace(u["flotilla-agent.service"], []byte("ProtectSystem="), []byte("ProtectSystm="), 1)
		}, false},
		{"bad key in drop-in", func(u map[string][]byte) {
			u["flotilla-controlplane.service.d/postgres.conf"] = append(u["flotilla-controlplane.service.d/postgres.conf"], "LoadCredentials=x:/y\n"...)
		}, false},
		{"binary missing", func(u map[string][]byte) {
			u["flotilla-controlplane.service"] = bytes.Replace(u["flotilla-controlplane.service"], []byte("ExecStart=/usr/local/bin/flotilla-controlplane "), []byte("ExecStart=/usr/local/bin/no-such-binary "), 1)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			units := shippedUnits(t)
			tt.edit(units)
			root := unitRoot(t, units)
			out, err := exec.Command(analyze, append([]string{"verify", "--root=" + root}, unitNames...)...).CombinedOutput()
			ok := err == nil && len(bytes.TrimSpace(out)) == 0
			if ok != tt.wantOK {
				t.Errorf("systemd-analyze verify: ok = %v, want %v (err %v)\n%s", ok, tt.wantOK, err, out)
			}
		})
	}
}

// exposureLine is systemd-analyze security's summary line.
var exposureLine = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+)`)

// TestSystemdUnitsSecurity holds each unit's exposure score to the one
// docs/operations.md states.
func TestSystemdUnitsSecurity(t *testing.T) {
	analyze := tool(t, "systemd-analyze", "systemd")
	docs := string(readFileT(t, filepath.Join("..", "docs", "operations.md")))
	for _, name := range unitNames {
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", filepath.Join(systemdDir, name)).CombinedOutput()
			if err != nil {
				t.Fatalf("systemd-analyze security: %v\n%s", err, out)
			}
			m := exposureLine.FindStringSubmatch(string(out))
			if m == nil || m[1] != name {
				t.Fatalf("no exposure score for %s in:\n%s", name, out)
			}
			score, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatal(err)
			}
			if score > maxExposure[name] {
				t.Errorf("%s: exposure %.1f, above the documented %.1f", name, score, maxExposure[name])
			}
			if want := fmt.Sprintf("| %s | %.1f |", name, maxExposure[name]); !strings.Contains(docs, want) {
				t.Errorf("docs/operations.md lacks the row %q", want)
			}
		})
	}
}

// userData is the part of the cloud-config the tests read.
type userData struct {
	Packages   []string `yaml:"packages"`
	WriteFiles []struct {
		Path        string `yaml:"path"`
		Owner       string `yaml:"owner"`
		Permissions string `yaml:"permissions"`
		Content     string `yaml:"content"`
	} `yaml:"write_files"`
	RunCmd []any `yaml:"runcmd"`
}

// file is one write_files entry.
type file struct{ owner, perm, content string }

func loadUserData(t *testing.T) (map[string]file, []string) {
	t.Helper()
	raw := readFileT(t, userDataPath)
	if !bytes.HasPrefix(raw, []byte("#cloud-config\n")) {
		t.Fatal("user data must start with #cloud-config, or cloud-init ignores it")
	}
	var ud userData
	if err := yaml.Unmarshal(raw, &ud); err != nil {
		t.Fatalf("parse %s: %v", userDataPath, err)
	}
	files := map[string]file{}
	for _, f := range ud.WriteFiles {
		files[f.Path] = file{f.Owner, f.Permissions, f.Content}
	}
	var cmds []string
	for _, c := range ud.RunCmd {
		cmds = append(cmds, fmt.Sprint(c))
	}
	return files, cmds
}

// TestCloudInitUserData checks the EC2 user data: cloud-init's own schema
// check when cloud-init is installed, and always the files and commands an
// agent needs to register at boot.
func TestCloudInitUserData(t *testing.T) {
	t.Run("schema", func(t *testing.T) {
		ci := tool(t, "cloud-init", "cloud-init")
		out, err := exec.Command(ci, "schema", "--config-file", userDataPath).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
			t.Errorf("cloud-init schema: %v\n%s", err, out)
		}
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		writeFileT(t, bad, bytes.Replace(readFileT(t, userDataPath), []byte("\npackages:\n"), []byte("\npackages: 5\nunused:\n"), 1), 0o644)
		if out, err := exec.Command(ci, "schema", "--config-file", bad).CombinedOutput(); err == nil {
			t.Errorf("cloud-init schema accepted packages: 5\n%s", out)
		}
	})
	files, cmds := loadUserData(t)
	want := []struct{ path, owner, perm string }{
		{"/etc/flotilla/agent.yaml", "root:root", "0644"},
		{"/etc/flotilla/join-token", "root:root", "0600"},
		{"/etc/flotilla/agent-download.env", "root:root", "0600"},
		{"/usr/local/sbin/flotilla-agent-install", "root:root", "0755"},
		{"/etc/systemd/system/flotilla-agent.service", "root:root", "0644"},
	}
	for _, w := range want {
		f, ok := files[w.path]
		switch {
		case !ok:
			t.Errorf("write_files lacks %s", w.path)
		case f.owner != w.owner || f.perm != w.perm:
			t.Errorf("%s: owner %q permissions %q, want %q %q", w.path, f.owner, f.perm, w.owner, w.perm)
		case strings.TrimSpace(f.content) == "":
			t.Errorf("%s is empty", w.path)
		}
	}
	if got := files["/etc/systemd/system/flotilla-agent.service"].content; got != string(readFileT(t, filepath.Join(systemdDir, "flotilla-agent.service"))) {
		t.Error("the unit in the user data differs from deploy/systemd/flotilla-agent.service; copy it over")
	}
	var cfg struct {
		JoinTokenFile string `yaml:"join_token_file"`
	}
	if err := yaml.Unmarshal([]byte(files["/etc/flotilla/agent.yaml"].content), &cfg); err != nil {
		t.Fatalf("agent.yaml: %v", err)
	}
	if cfg.JoinTokenFile != "/etc/flotilla/join-token" {
		t.Errorf("agent.yaml: join_token_file = %q, want the token file the user data writes", cfg.JoinTokenFile)
	}
	all := strings.Join(cmds, "\n")
	for _, w := range []string{"/usr/local/sbin/flotilla-agent-install && ", "systemctl enable --now flotilla-agent.service"} {
		if !strings.Contains(all, w) {
			t.Errorf("runcmd lacks %q:\n%s", w, all)
		}
	}
}

// TestCloudInitAgentConfigLoads starts the real agent with the user data's
// agent.yaml: it must get past its configuration and executors and dial the
// control plane (a listener here stands in for it), instead of exiting with
// a configuration error.
func TestCloudInitAgentConfigLoads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the agent binary; run without -short")
	}
	agentBin := fixture.Binary(t, "flotilla-agent")
	files, _ := loadUserData(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "agent.yaml")
	token := filepath.Join(dir, "join-token")
	writeFileT(t, config, []byte(files["/etc/flotilla/agent.yaml"].content), 0o644)
	writeFileT(t, token, []byte(files["/etc/flotilla/join-token"].content), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	cmd := exec.Command(agentBin, "-config", config)
	cmd.Env = append(os.Environ(),
		"FLOTILLA_CONTROL_PLANE_ADDRESS="+ln.Addr().String(),
		"FLOTILLA_JOIN_TOKEN_FILE="+token,
		"FLOTILLA_STATE_DIR="+filepath.Join(dir, "state"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	dialed := make(chan struct{})
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			close(dialed)
		}
	}()
	select {
	case <-dialed:
		_ = cmd.Process.Kill()
		<-exited
	case err := <-exited:
		t.Fatalf("the agent exited (%v) instead of dialing the control plane:\n%s", err, stderr.String())
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("the agent did not dial the control plane within a minute:\n%s", stderr.String())
	}
}

// TestAgentInstallScript runs the user data's install script against an
// HTTPS server: the right checksum installs the binary, a wrong one or a
// non-https URL installs nothing and fails.
func TestAgentInstallScript(t *testing.T) {
	tool(t, "curl", "curl")
	tool(t, "sha256sum", "coreutils")
	files, _ := loadUserData(t)
	binary := []byte("#!/bin/sh\necho flotilla-agent\n")
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/flotilla-agent" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(binary)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	writeFileT(t, ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	sum := sha256.Sum256(binary)
	good := hex.EncodeToString(sum[:])
	tests := []struct {
		name, url, sum string
		wantOK         bool
	}{
		{"right checksum", srv.URL + "/flotilla-agent", good, true},
		{"wrong checksum", srv.URL + "/flotilla-agent", strings.Repeat("0", 64), false},
		{"download fails", srv.URL + "/missing", good, false},
		{"not https", "http://" + strings.TrimPrefix(srv.URL, "https://") + "/flotilla-agent", good, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			script := filepath.Join(dir, "install")
			writeFileT(t, script, []byte(files["/usr/local/sbin/flotilla-agent-install"].content), 0o755)
			env := filepath.Join(dir, "download.env")
			writeFileT(t, env, []byte(fmt.Sprintf("FLOTILLA_AGENT_URL=%s  # REPLACE-ME\nFLOTILLA_AGENT_SHA256=%s  # REPLACE-ME\n", tt.url, tt.sum)), 0o600)
			bin := filepath.Join(dir, "bin")
			writeFileT(t, filepath.Join(bin, ".keep"), nil, 0o644)
			cmd := exec.Command(script)
			cmd.Env = append(os.Environ(), "FLOTILLA_DOWNLOAD_ENV="+env, "FLOTILLA_INSTALL_DIR="+bin, "CURL_CA_BUNDLE="+ca)
			out, err := cmd.CombinedOutput()
			if (err == nil) != tt.wantOK {
				t.Fatalf("install: err = %v, want ok %v\n%s", err, tt.wantOK, out)
			}
			entries, _ := os.ReadDir(bin)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			wantNames := ".keep"
			if tt.wantOK {
				wantNames = ".keep flotilla-agent"
			}
			if got := strings.Join(names, " "); got != wantNames {
				t.Fatalf("install dir holds %q, want %q", got, wantNames)
			}
			if tt.wantOK {
				if got := readFileT(t, filepath.Join(bin, "flotilla-agent")); !bytes.Equal(got, binary) {
					t.Errorf("installed %q, want %q", got, binary)
				}
				if info, _ := os.Stat(filepath.Join(bin, "flotilla-agent")); info.Mode().Perm() != 0o755 {
					t.Errorf("installed with mode %v, want 0755", info.Mode().Perm())
				}
			}
		})
	}
}
