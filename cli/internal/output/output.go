package output

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"
)

// Format is an output format.
type Format string

// The formats of -o.
const (
	Table Format = "table"
	JSON  Format = "json"
	YAML  Format = "yaml"
)

// ParseFormat parses the value of -o.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case Table, JSON, YAML:
		return f, nil
	case "":
		return Table, nil
	}
	return "", fmt.Errorf("-o %q: want table, json or yaml", s)
}

// Machine reports whether f is for scripts.
func (f Format) Machine() bool { return f == JSON || f == YAML }

// marshaler is the API's JSON mapping, as grpcurl and the gateway-less
// API documentation show it: lowerCamelCase names, enums by name, 64-bit
// integers as strings, unset fields left out.
var marshaler = protojson.MarshalOptions{}

// JSONLine is m as one line of compact JSON, without the newline.
func JSONLine(m proto.Message) ([]byte, error) {
	b, err := marshaler.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// WriteJSON writes m to w as one line of JSON.
func WriteJSON(w io.Writer, m proto.Message) error {
	b, err := JSONLine(m)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// YAMLOf is m as a YAML document with the JSON mapping's names and values.
func YAMLOf(m proto.Message) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return yaml.Marshal(v)
}

// WriteYAML writes m to w as one YAML document, starting with "---".
func WriteYAML(w io.Writer, m proto.Message) error {
	b, err := YAMLOf(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "---\n%s", b)
	return err
}

// Write writes m to w in a machine format f.
func Write(w io.Writer, f Format, m proto.Message) error {
	if f == YAML {
		return WriteYAML(w, m)
	}
	return WriteJSON(w, m)
}

// TableWriter writes aligned columns.
type TableWriter struct{ tw *tabwriter.Writer }

// NewTable starts a table on w with its header.
func NewTable(w io.Writer, header ...string) *TableWriter {
	t := &TableWriter{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.Row(header...)
	return t
}

// Row adds a row; an empty cell is shown as "-".
func (t *TableWriter) Row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
		cells[i] = strings.ReplaceAll(cells[i], "\t", " ")
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// Flush writes the table out.
func (t *TableWriter) Flush() error { return t.tw.Flush() }
