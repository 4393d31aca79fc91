package api

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/pki"
)

func TestCSRErrorsSpeakTheRequestersTerms(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		msg    string
		logged bool
	}{
		{"a refused CSR", &pki.CSRError{Reason: "an RSA key; use an ECDSA P-256 (or P-384) key"}, codes.InvalidArgument,
			"csr: an RSA key; use an ECDSA P-256 (or P-384) key", false},
		{"a wrapped refused CSR", errors.Join(errors.New("x509: bad"), &pki.CSRError{Reason: "empty"}), codes.InvalidArgument, "csr: empty", false},
		{"the CA's own failure", errors.New("pki: sign agent certificate: x509: requested SignatureAlgorithm does not match private key type"),
			codes.Internal, "signing the agent's certificate failed in the control plane's CA; see its log", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.ErrorLevel)
			err := csrError(zap.New(core), "signing the agent's certificate", tt.err)
			st := status.Convert(err)
			if st.Code() != tt.code || st.Message() != tt.msg {
				t.Fatalf("csrError = %s %q, want %s %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
			if strings.Contains(st.Message(), "x509") {
				t.Errorf("the answer %q exposes the library's error", st.Message())
			}
			if got := logs.Len() > 0; got != tt.logged {
				t.Errorf("logged = %v, want %v (the cause goes to the log, not the caller)", got, tt.logged)
			}
		})
	}
}

func TestValidatorsRefuseCSRsInTheRequestersTerms(t *testing.T) {
	for _, csr := range [][]byte{[]byte("nope"), {0x30, 0x03, 0x02, 0x01}, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")} {
		errs := map[string]error{
			"RenewCertificate": validateRenew(&flotillav1.RenewCertificateRequest{Csr: csr}),
			"IssueOperatorCertificate": func() error {
				_, _, err := validateIssueOperatorCertificate(&flotillav1.IssueOperatorCertificateRequest{Name: "ada", Role: flotillav1.Role_ROLE_ADMIN, Csr: csr})
				return err
			}(),
		}
		for rpc, err := range errs {
			msg := status.Convert(err).Message()
			if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(msg, "csr: ") || strings.HasPrefix(msg, "csr: csr:") {
				t.Errorf("%s with CSR %q: %v, want InvalidArgument naming csr once", rpc, csr, err)
			}
			for _, leak := range []string{"x509", "asn1", "pem:", "crypto/"} {
				if strings.Contains(msg, leak) {
					t.Errorf("%s with CSR %q: %q exposes %q", rpc, csr, msg, leak)
				}
			}
		}
	}
}
