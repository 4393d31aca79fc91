package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestJoinNotes(t *testing.T) {
	cases := [][3]string{{"a", "b", "a; b"}, {"", "b", "b"}, {"a", "", "a"}, {"", "", ""}}
	for _, c := range cases {
		if got := joinNotes(c[0], c[1]); got != c[2] {
			t.Errorf("joinNotes(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"nonsense"},
		{"connect", "-agents", "0"},
		{"connect", "-runs", "3"}, // connect has no -runs
		{"fanout", "extra"},
		{"connect", "-source-base", "255"},
		{"connect", "-store", "mysql"},
		{"connect", "-store", ""},
		{"connect", "-replicas", "3"}, // SQLite serves one process
		{"connect", "-replicas", "0", "-store", "postgres"},
		{"reconnect", "-replicas", "3", "-store", "postgres"}, // one control plane, restarted
		{"rollout", "-replicas", "3"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("run(%q) = %d, want 2 (usage); stderr: %s", args, code, errOut.String())
		}
	}
}

func TestUsageListsEveryBenchmark(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-h"}, &out, &errOut); code != 0 {
		t.Fatalf("run(-h) = %d", code)
	}
	for _, name := range []string{"connect", "heartbeats", "fanout", "reconnect", "rollout", "agent-idle", "lost-agent", "all"} {
		if !strings.Contains(errOut.String(), "  "+name+" ") {
			t.Errorf("usage lacks %q:\n%s", name, errOut.String())
		}
	}
}

func TestStoreNoteOnlyWhereAControlPlaneRuns(t *testing.T) {
	for _, c := range []struct {
		name string
		want bool
	}{{"connect", true}, {"heartbeats", true}, {"fanout", true}, {"reconnect", true}, {"rollout", false}} {
		s, ok := chooseBenchmarks(c.name)
		if !ok || len(s) != 1 {
			t.Fatalf("no benchmark %q", c.name)
		}
		if got := slices.Contains(s[0].Flags, "store"); got != c.want {
			t.Errorf("%s: figures name the store = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestReplicasNeedPostgres(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"fanout", "-replicas", "3", "-agents", "300"}, &out, &errOut); code != 2 {
		t.Fatalf("run(fanout -replicas 3) on SQLite = %d, want 2 (usage); stderr: %s", code, errOut.String())
	}
	if got := errOut.String(); !strings.Contains(got, "-replicas 3") || !strings.Contains(got, "-store postgres") {
		t.Errorf("error %q does not name -replicas and -store postgres", got)
	}
}

func TestReplicasOnlyWhereAFleetIsMeasured(t *testing.T) {
	for _, c := range []struct {
		name string
		want bool
	}{{"connect", true}, {"heartbeats", true}, {"fanout", true}, {"reconnect", false}, {"agent-idle", false}, {"lost-agent", false}} {
		s, ok := chooseBenchmarks(c.name)
		if !ok || len(s) != 1 {
			t.Fatalf("no benchmark %q", c.name)
		}
		if got := slices.Contains(s[0].Flags, "replicas"); got != c.want {
			t.Errorf("%s takes -replicas = %v, want %v", c.name, got, c.want)
		}
	}
}
