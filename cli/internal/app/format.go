package app

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"flotilla.dev/cli/internal/output"
)

// emit writes m in the machine format, when one was asked for, and
// reports whether it did; the caller prints its table otherwise.
func (a *app) emit(m proto.Message) (bool, error) {
	if !a.format.Machine() {
		return false, nil
	}
	return true, output.Write(a.env.Stdout, a.format, m)
}

// ts formats a timestamp for a table: local time to the second, "" unset.
func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().Local().Format("2006-01-02 15:04:05")
}

// age is how long ago t was, "" unset.
func age(t *timestamppb.Timestamp, now time.Time) string {
	if t == nil {
		return ""
	}
	d := now.Sub(t.AsTime())
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	case d < 48*time.Hour:
		return d.Round(time.Hour).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// dur formats a duration, "" unset.
func dur(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	return d.AsDuration().String()
}

// labels formats a label map as a selector would: "k=v,k=v", sorted.
func labels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// enumName strips an enum value's prefix: AGENT_STATE_CONNECTED with
// prefix "AGENT_STATE_" is "connected".
func enumName(v fmt.Stringer, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(v.String(), prefix))
}

// kv prints "key: value" lines, skipping empty values.
type kv struct{ b strings.Builder }

func (k *kv) add(key, value string) {
	if value == "" {
		return
	}
	fmt.Fprintf(&k.b, "%-16s %s\n", key+":", value)
}

func (k *kv) String() string { return k.b.String() }

// summary formats counts by state: "running 2, succeeded 3", sorted.
func summary(m map[string]int32) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	return strings.Join(parts, ", ")
}
