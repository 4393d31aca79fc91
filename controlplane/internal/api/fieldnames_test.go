package api

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/rollout"
)

// Every error of a request validator names a field the request really has.
// The test walks each request's descriptor: for every field, at every
// depth, it spoils that one field of a valid request in the ways a hostile
// client would (too long, control bytes, negative, unknown enum value,
// thousands of entries), runs the validator and resolves the field path the
// refusal names ("spec.restart.container", "hello.capabilities[3]") against
// the same descriptor. A misspelt or invented field name fails here.

// fieldCase is one request validator with a valid request to spoil.
type fieldCase struct {
	name     string
	valid    proto.Message
	validate func(proto.Message) error
}

// covers names the one top-level field that a validator of part of a
// request checks; the others are left alone.
var covers = map[string]string{
	"Connect hello": "hello", "Connect heartbeat": "heartbeat", "Connect command_event": "command_event",
	"Connect journal_report": "journal_report", "RunCommand spec": "spec", "RunCommand start_candidate": "spec",
	"RunCommand swap_servers": "spec", "RunCommand blue_green": "spec",
}

func fieldCases(t *testing.T) []fieldCase {
	csr := seedCSR(t)
	strategy := &flotillav1.RolloutStrategy{Batch: &flotillav1.RolloutStrategy_BatchSize{BatchSize: 2}, Canary: 1,
		PauseBetweenBatches: durationpb.New(time.Second), MinHealthyTime: durationpb.New(time.Second), HealthyDeadline: durationpb.New(time.Minute),
		MaxFailures: &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: 1}}}
	return []fieldCase{
		{"Register", &flotillav1.RegisterRequest{JoinToken: "fjt_abc", Csr: csr, Hostname: "web-1", Labels: map[string]string{"env": "prod"}},
			func(m proto.Message) error { return validateRegister(m.(*flotillav1.RegisterRequest)) }},
		{"Connect hello", &flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Hello{Hello: &flotillav1.Hello{
			AgentId: "web-1-abc123", Version: "v1", Hostname: "web-1", Labels: map[string]string{"env": "prod"}, Capabilities: []string{"docker"},
			Containers: []*flotillav1.ManagedContainer{{Name: "web", Image: "registry.internal/web:v2", State: "running"}}, StartedAt: timestamppb.Now()}}},
			func(m proto.Message) error { return validateHello(m.(*flotillav1.ConnectRequest).GetHello()) }},
		{"Connect heartbeat", &flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Heartbeat{Heartbeat: &flotillav1.Heartbeat{
			ObservedAt: timestamppb.Now(), Host: &flotillav1.HostMetrics{Disks: []*flotillav1.DiskUsage{{Path: "/", UsedPercent: 5}}},
			App:       &flotillav1.AppHealth{Url: "http://127.0.0.1/health", Healthy: true, Status: "ok"},
			Databases: []*flotillav1.DatabaseStats{{Name: "shop"}}}}},
			func(m proto.Message) error { return validateHeartbeat(m.(*flotillav1.ConnectRequest).GetHeartbeat()) }},
		{"Connect command_event", &flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_CommandEvent{CommandEvent: &flotillav1.CommandEvent{CommandId: "fc-1.web-1"}}},
			func(m proto.Message) error {
				return validateCommandEvent("command_event", m.(*flotillav1.ConnectRequest).GetCommandEvent())
			}},
		{"Connect journal_report", &flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_JournalReport{JournalReport: &flotillav1.JournalReport{
			Entries: []*flotillav1.CommandEvent{{CommandId: "fc-1.web-1"}, {CommandId: "fc-2.web-1"}}}}},
			func(m proto.Message) error {
				return validateJournalReport(m.(*flotillav1.ConnectRequest).GetJournalReport())
			}},
		{"RenewCertificate", &flotillav1.RenewCertificateRequest{Csr: csr},
			func(m proto.Message) error { return validateRenew(m.(*flotillav1.RenewCertificateRequest)) }},
		{"CreateJoinToken", &flotillav1.CreateJoinTokenRequest{Ttl: durationpb.New(time.Hour), MaxUses: 2, Labels: map[string]string{"env": "prod"}, Description: "web"},
			func(m proto.Message) error {
				_, _, err := validateCreateJoinToken(m.(*flotillav1.CreateJoinTokenRequest))
				return err
			}},
		{"ListAgents", &flotillav1.ListAgentsRequest{Selector: "env=prod", States: []flotillav1.AgentState{flotillav1.AgentState_AGENT_STATE_CONNECTED}, PageSize: 10},
			func(m proto.Message) error { _, err := listAgentsQuery(m.(*flotillav1.ListAgentsRequest)); return err }},
		{"CreateAPIToken", &flotillav1.CreateAPITokenRequest{Name: "ci", Role: flotillav1.Role_ROLE_VIEWER, Ttl: durationpb.New(time.Hour)},
			func(m proto.Message) error {
				_, _, err := validateCreateAPIToken(m.(*flotillav1.CreateAPITokenRequest))
				return err
			}},
		{"IssueOperatorCertificate", &flotillav1.IssueOperatorCertificateRequest{Name: "ada", Role: flotillav1.Role_ROLE_ADMIN, Csr: csr, Ttl: durationpb.New(8 * time.Hour)},
			func(m proto.Message) error {
				_, _, err := validateIssueOperatorCertificate(m.(*flotillav1.IssueOperatorCertificateRequest))
				return err
			}},
		{"ListRemediations", &flotillav1.ListRemediationsRequest{Service: "web", AgentId: "web-1-abc123", PageSize: 10},
			func(m proto.Message) error {
				_, err := remediationQuery(m.(*flotillav1.ListRemediationsRequest))
				return err
			}},
		{"ListAuditEvents", &flotillav1.ListAuditEventsRequest{Principal: "token:at-1", Method: "/flotilla.v1.AdminService/CreateAPIToken", Since: timestamppb.Now(), PageSize: 5, RequestId: "req-1"},
			func(m proto.Message) error { _, err := auditQuery(m.(*flotillav1.ListAuditEventsRequest)); return err }},
		{"DeregisterAgent", &flotillav1.DeregisterAgentRequest{AgentId: "web-1-abc123", Reason: "gone"},
			func(m proto.Message) error { return validateDeregister(m.(*flotillav1.DeregisterAgentRequest)) }},
		{"StartRollout", &flotillav1.StartRolloutRequest{Service: "web", Image: "registry.internal/web:v3", Strategy: strategy, Reason: "release"},
			func(m proto.Message) error { return validateStart(m.(*flotillav1.StartRolloutRequest)) }},
		{"PutService", &flotillav1.PutServiceRequest{Service: &flotillav1.Service{Name: "web", Container: "web", Selector: "role=web",
			HealthUrl: "http://127.0.0.1/health", DefaultStrategy: strategy,
			Remediation: &flotillav1.RemediationPolicy{MemoryPercentOfLimit: 90, SustainedFor: durationpb.New(5 * time.Minute),
				GrowthWindow: durationpb.New(30 * time.Minute), MinGrowthPercent: 10, MaxRestartsPerHostPerHour: 2},
			LoadBalancer: &flotillav1.LoadBalancer{Selector: "role=lb", Upstream: "web", ServerPort: 8080, AddressLabel: "address"}}},
			func(m proto.Message) error {
				return GRPCError(rollout.ValidateService(m.(*flotillav1.PutServiceRequest).GetService()))
			}},
		{"StartRollout blue-green", &flotillav1.StartRolloutRequest{Service: "web", Image: "registry.internal/web:v3", Reason: "release",
			Strategy: &flotillav1.RolloutStrategy{MinHealthyTime: durationpb.New(time.Second), HealthyDeadline: durationpb.New(time.Minute),
				BlueGreen: &flotillav1.BlueGreen{KeepPrevious: durationpb.New(15 * time.Minute)}}},
			func(m proto.Message) error { return validateStart(m.(*flotillav1.StartRolloutRequest)) }},
		{"PutService alternate_port", &flotillav1.PutServiceRequest{Service: &flotillav1.Service{Name: "web", Container: "web", Selector: "role=web",
			LoadBalancer:    &flotillav1.LoadBalancer{Selector: "role=lb", Upstream: "web", ServerPort: 8080, AlternatePort: 8081},
			DefaultStrategy: &flotillav1.RolloutStrategy{Surge: true}}},
			func(m proto.Message) error {
				return GRPCError(rollout.ValidateService(m.(*flotillav1.PutServiceRequest).GetService()))
			}},
		{"RunCommand start_candidate", &flotillav1.RunCommandRequest{Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_StartCandidate{
			StartCandidate: &flotillav1.StartCandidateCommand{Container: "web", Image: "registry.internal/web:v2", Port: 8080, CandidatePort: 8081,
				MinHealthyTime: durationpb.New(time.Second), HealthyDeadline: durationpb.New(time.Minute)}}}},
			func(m proto.Message) error {
				return GRPCError(commands.ValidateSpec("spec", m.(*flotillav1.RunCommandRequest).GetSpec()))
			}},
		{"RunCommand swap_servers", &flotillav1.RunCommandRequest{Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_SwapServers{
			SwapServers: &flotillav1.SwapServersCommand{Upstream: "web", Swaps: []*flotillav1.ServerSwap{{From: "10.0.0.1:8080", To: "10.0.0.1:8081"}}}}}},
			func(m proto.Message) error {
				return GRPCError(commands.ValidateSpec("spec", m.(*flotillav1.RunCommandRequest).GetSpec()))
			}},
		{"RunCommand blue_green", &flotillav1.RunCommandRequest{Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_BlueGreen{
			BlueGreen: &flotillav1.BlueGreenCommand{Container: "web", Action: flotillav1.BlueGreenAction_BLUE_GREEN_ACTION_PROMOTE}}}},
			func(m proto.Message) error {
				return GRPCError(commands.ValidateSpec("spec", m.(*flotillav1.RunCommandRequest).GetSpec()))
			}},
		{"RunCommand spec", &flotillav1.RunCommandRequest{Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{
			Restart: &flotillav1.RestartCommand{Container: "web", Image: "registry.internal/web:v2", StopTimeout: durationpb.New(time.Second)}}}},
			func(m proto.Message) error {
				return GRPCError(commands.ValidateSpec("spec", m.(*flotillav1.RunCommandRequest).GetSpec()))
			}},
	}
}

func TestErrorsNameFieldsTheRequestHas(t *testing.T) {
	for _, c := range fieldCases(t) {
		t.Run(c.name, func(t *testing.T) {
			if err := c.validate(c.valid); err != nil {
				t.Fatalf("the valid request is refused: %v", err)
			}
			md := c.valid.ProtoReflect().Descriptor()
			refusals := 0
			for _, sp := range spoilings(md, nil, 0) {
				if only := covers[c.name]; only != "" && top(sp.path) != only {
					continue
				}
				m := proto.Clone(c.valid)
				sp.apply(m.ProtoReflect())
				err := c.validate(m)
				if status.Code(err) != codes.InvalidArgument {
					if sp.mustRefuse {
						t.Errorf("%s: accepted (%v); a list field needs a bound", sp.name, err)
					}
					continue
				}
				refusals++
				msg := status.Convert(err).Message()
				field, _, ok := strings.Cut(msg, ": ")
				if !ok {
					t.Errorf("%s: %q names no field", sp.name, msg)
					continue
				}
				checkReason(t, sp.name, msg)
				if err := resolveFieldPath(md, field); err != nil {
					t.Errorf("%s: %q: %v", sp.name, msg, err)
				} else if top(field) != top(sp.path) {
					t.Errorf("%s: %q names %s, not the field that is wrong", sp.name, msg, field)
				}
			}
			if refusals == 0 {
				t.Errorf("no spoiled field was refused: the test exercises nothing")
			}
		})
	}
}

// libraryWords are the marks of an error text that a library wrote for
// programmers rather than for the caller.
var libraryWords = []string{"proto:", "invalid reference format", "x509:", "asn1:", "strconv.", "json:"}

// maxReason bounds a refusal: a hostile value is never echoed whole.
const maxReason = 600

// checkReason fails a refusal that speaks a library's words or repeats a
// long value.
func checkReason(t *testing.T, what, msg string) {
	t.Helper()
	for _, w := range libraryWords {
		if strings.Contains(msg, w) {
			t.Errorf("%s: %.200q speaks a library's words (%q)", what, msg, w)
		}
	}
	if len(msg) > maxReason {
		t.Errorf("%s: a %d-byte refusal (%.100q…), at most %d", what, len(msg), msg, maxReason)
	}
}

// An event in a journal report is named where it stands in the report,
// not as a command_event the report does not have.
func TestJournalReportNamesItsEntry(t *testing.T) {
	report := &flotillav1.JournalReport{Entries: []*flotillav1.CommandEvent{{CommandId: "fc-1.web-1"}, {CommandId: ""}}}
	err := validateJournalReport(report)
	if msg := status.Convert(err).Message(); status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(msg, "journal_report.entries[1].command_id: ") {
		t.Fatalf("validateJournalReport = %v, want InvalidArgument naming journal_report.entries[1].command_id", err)
	}
	md := (&flotillav1.ConnectRequest{}).ProtoReflect().Descriptor()
	if err := resolveFieldPath(md, "journal_report.entries[1].command_id"); err != nil {
		t.Fatal(err)
	}
}

func top(path string) string {
	p, _, _ := strings.Cut(path, ".")
	p, _, _ = strings.Cut(p, "[")
	return p
}

// resolveFieldPath resolves a dotted field path of an error ("a.b[3].c",
// "labels[\"k\"]") in md: each segment must be a field (or, last, a
// oneof) of the message the previous one leads to.
func resolveFieldPath(md protoreflect.MessageDescriptor, path string) error {
	segs := strings.Split(path, ".")
	for i, seg := range segs {
		name, _, _ := strings.Cut(seg, "[")
		if md == nil {
			return fmt.Errorf("%s: %s is below a field that is no message", path, name)
		}
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			if od := md.Oneofs().ByName(protoreflect.Name(name)); od != nil && i == len(segs)-1 {
				return nil
			}
			return fmt.Errorf("%s: %s has no field %q", path, md.FullName(), name)
		}
		switch {
		case fd.IsMap():
			md = fd.MapValue().Message()
		default:
			md = fd.Message()
		}
	}
	return nil
}

// spoiling makes one field of a request wrong.
type spoiling struct {
	name  string
	path  string
	apply func(protoreflect.Message)
	// mustRefuse: a value no validator may accept (a list or map far
	// longer than any bound: SECURITY.md, "Hostile input").
	mustRefuse bool
}

// spoilings lists the ways to spoil each field of md, descending into
// message fields (three levels; a Duration's seconds are deep enough).
func spoilings(md protoreflect.MessageDescriptor, at []protoreflect.FieldDescriptor, depth int) []spoiling {
	var out []spoiling
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		path := append(append([]protoreflect.FieldDescriptor{}, at...), fd)
		for _, v := range badValues(fd) {
			out = append(out, spoiling{name: pathName(path) + " " + v.name, path: pathName(path), apply: setAt(path, v.set), mustRefuse: v.overBound})
		}
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && depth < 3 {
			out = append(out, spoilings(fd.Message(), path, depth+1)...)
		}
	}
	return out
}

func pathName(path []protoreflect.FieldDescriptor) string {
	names := make([]string, len(path))
	for i, fd := range path {
		names[i] = string(fd.Name())
	}
	return strings.Join(names, ".")
}

// setAt returns a function that walks to the message holding the last
// field of path (creating messages on the way) and sets that field.
func setAt(path []protoreflect.FieldDescriptor, set func(protoreflect.Message, protoreflect.FieldDescriptor)) func(protoreflect.Message) {
	return func(m protoreflect.Message) {
		for _, fd := range path[:len(path)-1] {
			m = m.Mutable(fd).Message()
		}
		set(m, path[len(path)-1])
	}
}

type badValue struct {
	name      string
	set       func(protoreflect.Message, protoreflect.FieldDescriptor)
	overBound bool
}

func badValues(fd protoreflect.FieldDescriptor) []badValue {
	switch {
	case fd.IsMap():
		return []badValue{{"with 5000 entries", func(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
			mp := m.Mutable(fd).Map()
			for i := 0; i < 5000; i++ {
				k := protoreflect.ValueOfString(fmt.Sprintf("k%d", i)).MapKey()
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					mp.Set(k, protoreflect.ValueOfMessage(mp.NewValue().Message()))
				} else {
					mp.Set(k, protoreflect.ValueOfString("v"))
				}
			}
		}, true}, {"with a bad entry", func(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
			if fd.MapValue().Kind() == protoreflect.StringKind {
				m.Mutable(fd).Map().Set(protoreflect.ValueOfString("bad key\x00").MapKey(), protoreflect.ValueOfString("v\n"))
			}
		}, false}}
	case fd.IsList():
		return []badValue{{"with 200000 entries", func(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
			l := m.Mutable(fd).List()
			for i := 0; i < 200000; i++ {
				l.Append(l.NewElement())
			}
		}, true}}
	}
	set := func(v protoreflect.Value) func(protoreflect.Message, protoreflect.FieldDescriptor) {
		return func(m protoreflect.Message, fd protoreflect.FieldDescriptor) { m.Set(fd, v) }
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return []badValue{{name: "too long", set: set(protoreflect.ValueOfString(strings.Repeat("x", 70000)))},
			{name: "with control bytes", set: set(protoreflect.ValueOfString("a\x00b\n\xff"))}}
	case protoreflect.BytesKind:
		return []badValue{{name: "garbage", set: set(protoreflect.ValueOfBytes([]byte("garbage")))},
			{name: "too long", set: set(protoreflect.ValueOfBytes(make([]byte, 70000)))}}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return []badValue{{name: "negative", set: set(protoreflect.ValueOfInt32(-1))}, {name: "huge", set: set(protoreflect.ValueOfInt32(math.MaxInt32))}}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return []badValue{{name: "negative", set: set(protoreflect.ValueOfInt64(-1 << 40))}, {name: "huge", set: set(protoreflect.ValueOfInt64(math.MaxInt64))}}
	case protoreflect.EnumKind:
		return []badValue{{name: "unknown value", set: set(protoreflect.ValueOfEnum(999))}}
	case protoreflect.DoubleKind:
		return []badValue{{name: "NaN", set: set(protoreflect.ValueOfFloat64(math.NaN()))}, {name: "negative", set: set(protoreflect.ValueOfFloat64(-1))}}
	case protoreflect.MessageKind:
		return []badValue{{name: "empty", set: func(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
			m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message()))
		}}}
	}
	return nil
}
