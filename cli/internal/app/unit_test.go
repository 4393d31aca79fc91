package app

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/exitcode"
)

func TestErrorLine(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{status.Error(codes.InvalidArgument, "service.selector: selector \"a=;b\" at offset 2:\nexpected ','"),
			`InvalidArgument: service.selector: selector "a=;b" at offset 2: expected ','`},
		{exitcode.With(exitcode.Blocked, status.Error(codes.FailedPrecondition, "service web already has an active rollout: ro-1")),
			"FailedPrecondition: service web already has an active rollout: ro-1"},
		{errors.New("-f: open web.yaml: no such file or directory"), "-f: open web.yaml: no such file or directory"},
	} {
		if got := ErrorLine(tc.err); got != tc.want {
			t.Errorf("ErrorLine = %q\nwant %q", got, tc.want)
		}
	}
}

func TestParseService(t *testing.T) {
	svc, err := parseService("web.yaml", []byte(`name: web
container: web
selector: role=web
loadBalancer: {selector: role=lb, upstream: web, server_port: 8080}
default_strategy:
  batch_percent: 25
  min_healthy_time: 1m30s
  healthy_deadline: 10m
  offline_hosts: OFFLINE_POLICY_WAIT
`))
	if err != nil {
		t.Fatal(err)
	}
	s := svc.GetDefaultStrategy()
	if svc.GetLoadBalancer().GetServerPort() != 8080 || s.GetBatchPercent() != 25 ||
		s.GetMinHealthyTime().AsDuration().String() != "1m30s" || s.GetHealthyDeadline().GetSeconds() != 600 ||
		s.GetOfflineHosts() != flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT {
		t.Errorf("parsed %v", svc)
	}
	// The shape of a PutServiceRequest is read too.
	if svc, err := parseService("x", []byte("service:\n  name: api\n")); err != nil || svc.GetName() != "api" {
		t.Errorf("PutServiceRequest shape: %v, %v", svc, err)
	}
	for doc, want := range map[string]string{
		"name: web\nunknown_field: 1\n":                 "unknown_field",
		"default_strategy:\n  min_healthy_time: soon\n": "min_healthy_time",
		"name: [web\n": "web.yaml",
		"default_strategy:\n  healthy_deadline: {seconds: 1}\n": "healthy_deadline",
	} {
		_, err := parseService("web.yaml", []byte(doc))
		if exitcode.ForError(err) != exitcode.Invalid || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want an invalid-input error naming %q", doc, err, want)
		}
	}
}

func TestParseLimit(t *testing.T) {
	if l, err := parseLimit("--max-concurrency", "25%"); err != nil || l.GetPercent() != 25 {
		t.Errorf("25%%: %v, %v", l, err)
	}
	if l, err := parseLimit("--max-concurrency", "3"); err != nil || l.GetCount() != 3 {
		t.Errorf("3: %v, %v", l, err)
	}
	if l, err := parseLimit("--max-errors", ""); err != nil || l != nil {
		t.Errorf("unset: %v, %v", l, err)
	}
	if _, err := parseLimit("--max-errors", "many"); exitcode.ForError(err) != exitcode.Invalid || !strings.Contains(err.Error(), "--max-errors") {
		t.Errorf("many: %v", err)
	}
}

// TestUsageErrors: flags and arguments refused before any call are
// invalid input, named on one line.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"agents", "ls", "--nope"},
		{"agents", "ls", "--state", "sleepy"},
		{"rollout", "watch"},
		{"agents", "ls", "-o", "xml"},
		{"cmd", "run", "pull", "img:v1"},
		{"completion", "powershell"},
		{"nope"},
		{"rollout", "nope"},
	} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), args, Env{Stdout: &out, Stderr: &errOut,
			Getenv: func(string) string { return "" }, Version: "test"})
		if code != int(exitcode.Invalid) || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 || out.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d and one line on stderr", args, code, out.String(), errOut.String(), exitcode.Invalid)
		}
	}
}

func TestVersionAndCompletion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"completion", "bash"}, {"completion", "zsh"}, {"completion", "fish"}} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), args, Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }, Version: "v1.2.3"})
		if code != 0 || out.Len() == 0 || errOut.Len() != 0 {
			t.Errorf("%v: exit %d, %d bytes out, stderr %q", args, code, out.Len(), errOut.String())
		}
	}
}

func TestContainerResources(t *testing.T) {
	running := &flotillav1.ManagedContainer{Name: "web", State: "running", Resources: &flotillav1.ContainerResources{
		CpuPercent: 1.25, MemoryWorkingSetBytes: 48 << 20, MemoryLimitBytes: 128 << 20, RestartCount: 1, OomKills: 2}}
	if got, want := containerResources(running), " cpu 1.2% mem 48.0 MiB / 128.0 MiB (38%) restarts 1 oom-kills 2"; got != want {
		t.Errorf("running: %q\nwant %q", got, want)
	}
	exited := &flotillav1.ManagedContainer{Name: "web", State: "exited", Resources: &flotillav1.ContainerResources{OomKills: 1, OomKilled: true}}
	if got, want := containerResources(exited), " restarts 0 oom-kills 1 (last exit: OOM kill)"; got != want {
		t.Errorf("exited: %q\nwant %q", got, want)
	}
	if got := containerResources(&flotillav1.ManagedContainer{Name: "web"}); got != "" {
		t.Errorf("without a reading: %q", got)
	}
}

func TestRemediationActionNames(t *testing.T) {
	for a, want := range map[flotillav1.RemediationAction]string{
		flotillav1.RemediationAction_REMEDIATION_ACTION_RESTART:    "restart",
		flotillav1.RemediationAction_REMEDIATION_ACTION_ESCALATION: "escalation",
		flotillav1.RemediationAction_REMEDIATION_ACTION_OOM_KILL:   "oom-kill",
	} {
		if got := remediationAction(a); got != want {
			t.Errorf("remediationAction(%s) = %q, want %q", a, got, want)
		}
	}
}
