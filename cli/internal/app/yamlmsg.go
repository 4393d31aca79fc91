package app

import (
	"encoding/json"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"
)

// readFile reads the file a -f flag names; "-" is standard input.
func (a *app) readFile(flag, file string) ([]byte, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(a.env.Stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, usage("%s: %v", flag, err)
	}
	return b, nil
}

// parseYAMLMessage reads a YAML document into m by the API's JSON mapping
// (snake_case or lowerCamelCase field names, enums by name, durations in
// Go's notation or as "10s"). A document whose only key is wrapper (a
// request's shape, e.g. "policy:") is read from inside it. Errors name
// the file and the field at fault.
func parseYAMLMessage(file string, b []byte, wrapper string, m proto.Message) error {
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return usage("%s: %v", file, err)
	}
	if mp, ok := doc.(map[string]any); ok && wrapper != "" {
		if inner, ok := mp[wrapper].(map[string]any); ok && len(mp) == 1 {
			doc = inner
		}
	}
	if doc == nil {
		return usage("%s: empty document", file)
	}
	if err := normalizeDurations(doc, m.ProtoReflect().Descriptor()); err != nil {
		return usage("%s: %v", file, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return usage("%s: %v", file, err)
	}
	if err := protojson.Unmarshal(js, m); err != nil {
		return usage("%s: %v", file, err)
	}
	return nil
}
