package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// certCommand issues an operator certificate: the key is made here and
// never leaves the machine; only its CSR goes to the control plane.
func (a *app) certCommand() *cobra.Command {
	var role, dir string
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "cert NAME --role ROLE [--dir DIR] [--ttl 24h]",
		Short: "Issue an operator certificate (admin): a new key here, signed by the control plane",
		Long: `cert makes a P-256 key, sends its CSR to AdminService/IssueOperatorCertificate
and writes DIR/NAME.key (0600), DIR/NAME.crt and DIR/ca.crt. Use them with
--cert and --key, or in a context: flotilla context set NAME --cert ... --key ...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := parseRole(role)
			if err != nil {
				return err
			}
			key, csr, err := newCSR(args[0])
			if err != nil {
				return err
			}
			req := &flotillav1.IssueOperatorCertificateRequest{Name: args[0], Role: r, Csr: csr}
			if ttl > 0 {
				req.Ttl = durationpb.New(ttl)
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), c.Admin.IssueOperatorCertificate, req)
			if err != nil {
				return err
			}
			if err := writeCert(dir, args[0], key, resp); err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.env.Stdout, "operator certificate %s (role %s, serial %s) expires %s: %s, %s, CA %s\n", args[0], role,
				resp.GetSerial(), ts(resp.GetExpiresAt()), filepath.Join(dir, args[0]+".crt"), filepath.Join(dir, args[0]+".key"), filepath.Join(dir, "ca.crt"))
			return err
		},
	}
	c.Flags().StringVar(&role, "role", "", "viewer, operator or admin (required)")
	c.Flags().StringVar(&dir, "dir", ".", "where to write the key and certificates")
	c.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (default 24h, at most 720h)")
	return c
}

// newCSR makes a P-256 key and a CSR for it naming the operator.
func newCSR(name string) ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), der, nil
}

// writeCert writes the key (0600), the certificate and the CA bundle.
func writeCert(dir, name string, key []byte, resp *flotillav1.IssueOperatorCertificateResponse) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{name + ".key", key, 0o600},
		{name + ".crt", resp.GetCertificatePem(), 0o644},
		{"ca.crt", resp.GetCaBundlePem(), 0o644},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}
