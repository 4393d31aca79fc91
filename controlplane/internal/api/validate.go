package api

import (
	"errors"
	"fmt"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/pki"
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

// csrInvalid is the answer to a CSR that pki.ParseCSR refused:
// InvalidArgument naming csr, with pki's reason in the requester's terms.
func csrInvalid(err error) error {
	var refused *pki.CSRError
	if !errors.As(err, &refused) {
		refused = &pki.CSRError{Reason: "not accepted as a certificate signing request"}
	}
	return GRPCError(fault.Invalid("csr", "%s", refused.Reason))
}

// csrError is the answer to a failed signing: a refused CSR as csrInvalid
// says, any other failure is the CA's own, logged with its cause and
// answered as Internal without a library's words.
func csrError(log *zap.Logger, what string, err error) error {
	if errors.As(err, new(*pki.CSRError)) {
		return csrInvalid(err)
	}
	log.Error(what+" failed", zap.Error(err))
	return status.Errorf(codes.Internal, "%s failed in the control plane's CA; see its log", what)
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
