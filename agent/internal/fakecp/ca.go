package fakecp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/url"
	"time"
)

// SPIFFEPrefix starts the URI SAN naming an agent, as the control plane issues it.
const SPIFFEPrefix = "spiffe://flotilla/agent/"

// CA is a throw-away certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the CA certificate, PEM-encoded.
	PEM []byte
	// SHA256 is the hex SHA-256 of the CA certificate's DER, as
	// CreateJoinTokenResponse.ca_cert_sha256 gives it.
	SHA256 string
}

// NewCA creates a self-signed CA valid for a day.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return &CA{
		Cert:   cert,
		Key:    key,
		PEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		SHA256: hex.EncodeToString(sum[:]),
	}, nil
}

// ServerCertificate issues a server certificate for dnsName and returns it
// with the chain [leaf, CA], as the control plane presents it.
func (ca *CA) ServerCertificate(dnsName string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	der, err := ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: dnsName},
		DNSNames:    []string{dnsName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, key.Public(), time.Now().Add(24*time.Hour))
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key}, nil
}

// AgentCertificate issues a client certificate for agentID, named by the URI
// SAN spiffe://flotilla/agent/<agentID>, and returns it PEM-encoded.
func (ca *CA) AgentCertificate(pub crypto.PublicKey, agentID string, notAfter time.Time) ([]byte, error) {
	uri, err := url.Parse(SPIFFEPrefix + agentID)
	if err != nil {
		return nil, err
	}
	der, err := ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: agentID},
		URIs:        []*url.URL{uri},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, pub, notAfter)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func (ca *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey, notAfter time.Time) ([]byte, error) {
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Minute)
	tmpl.NotAfter = notAfter
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	return n
}

// AgentTLSConfig returns the mTLS client configuration of an agent registered
// as agentID, as the enroll package would build it, for tests that need a
// connected agent without going through registration.
func (s *Server) AgentTLSConfig(agentID string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	certPEM, err := s.CA.AgentCertificate(key.Public(), agentID, time.Now().Add(time.Hour))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(certPEM)
	roots := x509.NewCertPool()
	roots.AddCert(s.CA.Cert)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{block.Bytes}, PrivateKey: key}},
		RootCAs:      roots,
		ServerName:   ServerName,
	}, nil
}

// TLSFor returns the agent's TLS configuration function for package dial:
// cfg, checking the server name it is given.
func TLSFor(cfg *tls.Config) func(serverName string) *tls.Config {
	return func(serverName string) *tls.Config {
		c := cfg.Clone()
		c.ServerName = serverName
		return c
	}
}
