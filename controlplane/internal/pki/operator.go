package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// OperatorURI is the identity URI SAN of an operator's certificate.
func OperatorURI(name string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: operatorPathPrefix + name}
}

// RoleURI is the URI SAN that carries an operator certificate's role.
func RoleURI(role string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: rolePathPrefix + role}
}

// SignOperator checks an operator's certificate signing request and issues
// an mTLS client certificate for name with role. As for agents, only the
// CSR's public key is used. The certificate carries two URI SANs,
// spiffe://flotilla/operator/<name> and spiffe://flotilla/role/<role>; the
// subject (CN=<name>, OU=<role>) is informational only.
func (ca *CA) SignOperator(csrBytes []byte, name, role string, validity time.Duration) (*x509.Certificate, []byte, error) {
	if name == "" || strings.ContainsAny(name, "/?#%") {
		return nil, nil, fmt.Errorf("pki: operator name %q cannot be carried in a certificate", name)
	}
	if role == "" || strings.ContainsAny(role, "/?#%") {
		return nil, nil, fmt.Errorf("pki: role %q cannot be carried in a certificate", role)
	}
	csr, err := ParseCSR(csrBytes)
	if err != nil {
		return nil, nil, err
	}
	tmpl, err := ca.template(name, validity)
	if err != nil {
		return nil, nil, err
	}
	tmpl.Subject.OrganizationalUnit = []string{role}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tmpl.URIs = []*url.URL{OperatorURI(name), RoleURI(role)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign operator certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: parse issued certificate: %w", err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// OperatorFromCertificate returns the operator name and role carried by a
// verified client certificate. It needs exactly one operator identity and
// one role, and no agent identity: an agent's certificate never reads as an
// operator's.
func OperatorFromCertificate(cert *x509.Certificate) (name, role string, err error) {
	ids := flotillaIdentities(cert)
	switch {
	case len(ids.agents) > 0:
		return "", "", errors.New("certificate carries an agent identity, not an operator identity")
	case len(ids.operators) == 0:
		return "", "", errors.New("certificate carries no operator identity")
	case len(ids.operators) > 1:
		return "", "", errors.New("certificate carries more than one operator identity")
	case len(ids.roles) != 1:
		return "", "", fmt.Errorf("operator certificate carries %d roles, want exactly one", len(ids.roles))
	}
	return ids.operators[0], ids.roles[0], nil
}
