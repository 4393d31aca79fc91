package api

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"flotilla.dev/pkg/validate"
)

// Input limits. They bound what a hostile caller can make the control plane
// store or hold in memory.
const (
	maxLabels         = validate.MaxLabels
	maxHostnameLength = 253
	maxCSRBytes       = 16 << 10
	maxTokenLength    = 256
	maxDescription    = 512
	maxCapabilities   = 64
	maxContainers     = 1024
	maxDisks          = 64
	maxDatabases      = 64
	maxShortString    = 256
	maxPageSize       = 1000
	maxStateFilters   = 16
	defaultPageSize   = 100
)

// invalid returns an InvalidArgument status naming the field.
func invalid(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
}

// boundStates refuses a states filter of a list RPC with more than
// maxStateFilters entries.
func boundStates(n int) error {
	if n > maxStateFilters {
		return invalid("states", "%d entries, at most %d allowed", n, maxStateFilters)
	}
	return nil
}

func validateHostname(field, h string, required bool) error {
	if h == "" {
		if required {
			return invalid(field, "required")
		}
		return nil
	}
	if len(h) > maxHostnameLength {
		return invalid(field, "%d characters, at most %d allowed", len(h), maxHostnameLength)
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return invalid(field, "character %q not allowed in a hostname", c)
		}
	}
	return nil
}

func validateLabels(field string, labels map[string]string) error {
	if err := validate.Labels(labels, maxLabels); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

func validateShort(field, s string, limit int) error {
	if err := validate.Text(s, limit); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}
