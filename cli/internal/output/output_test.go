package output

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

func TestDiff(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"a\nb\n", "a\nb\n", ""},
		{"", "a\nb\n", "+ a\n+ b\n"},
		{"a\nb\nc\n", "a\nx\nc\n", "  a\n- b\n+ x\n  c\n"},
		{"a\nb\n", "a\n", "  a\n- b\n"},
	} {
		if got := Diff(tc.a, tc.b); got != tc.want {
			t.Errorf("Diff(%q, %q) =\n%s\nwant\n%s", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestJSONLineIsTheAPIsJSON: one line, and the same message as protojson
// reads it back.
func TestJSONLineIsTheAPIsJSON(t *testing.T) {
	m := &flotillav1.WatchRolloutResponse{Event: &flotillav1.RolloutEvent{Sequence: 7, Kind: &flotillav1.RolloutEvent_Host{
		Host: &flotillav1.HostStepChange{AgentId: "web-1", Step: flotillav1.HostStep_HOST_STEP_FAILED, Message: "health gate failed:\nstatus 503"}}}}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, m); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("not one line: %q", line)
	}
	if !strings.Contains(line, `"sequence":"7"`) || !strings.Contains(line, `"agentId":"web-1"`) || !strings.Contains(line, `"HOST_STEP_FAILED"`) {
		t.Errorf("not the API's JSON mapping: %s", line)
	}
	var back flotillav1.WatchRolloutResponse
	if err := protojson.Unmarshal([]byte(line), &back); err != nil || !proto.Equal(&back, m) {
		t.Errorf("read back %v, %v; want %v", &back, err, m)
	}
}

func TestYAMLOfUsesProtoNames(t *testing.T) {
	b, err := YAMLOf(&flotillav1.Service{Name: "web", HealthUrl: "http://x/health",
		DefaultStrategy: &flotillav1.RolloutStrategy{MinHealthyTime: durationpb.New(10e9)}})
	if err != nil {
		t.Fatal(err)
	}
	want := "default_strategy:\n    min_healthy_time: 10s\nhealth_url: http://x/health\nname: web\n"
	if string(b) != want {
		t.Errorf("YAML:\n%s\nwant\n%s", b, want)
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": Table, "table": Table, "JSON": JSON, "yaml": YAML} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("xml"); err == nil || !strings.Contains(err.Error(), "-o") {
		t.Errorf("ParseFormat(xml) = %v; want an error naming -o", err)
	}
}

func TestTable(t *testing.T) {
	var buf bytes.Buffer
	tw := NewTable(&buf, "ID", "STATE")
	tw.Row("web-1", "connected")
	tw.Row("db-1", "")
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "ID     STATE\nweb-1  connected\ndb-1   -\n"
	if buf.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", buf.String(), want)
	}
}
