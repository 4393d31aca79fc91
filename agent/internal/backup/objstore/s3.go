package objstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// S3Config is how the agent reaches S3-compatible object storage (YAML
// backup.s3). Credentials live here or in the agent's environment, never
// in a command.
type S3Config struct {
	// Endpoint is host[:port] without a scheme, e.g.
	// "s3.eu-west-1.amazonaws.com"; commands that name no endpoint use it.
	Endpoint string `yaml:"endpoint"`
	// AllowedEndpoints are further endpoints a command may name.
	AllowedEndpoints []string `yaml:"allowed_endpoints"`
	// Region is the bucket's region (default us-east-1).
	Region string `yaml:"region"`
	// AccessKeyID and SecretAccessKeyFile (a 0600 file holding the secret)
	// are the credentials; when AccessKeyID is empty the environment's
	// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN are
	// used.
	AccessKeyID         string `yaml:"access_key_id"`
	SecretAccessKeyFile string `yaml:"secret_access_key_file"`
	// Insecure talks plain HTTP instead of HTTPS (a test server, a MinIO on
	// a private network).
	Insecure bool `yaml:"insecure"`
	// CAFile is a PEM bundle that verifies the endpoint's certificate
	// (default: the system's roots).
	CAFile string `yaml:"ca_file"`
}

// Validate checks the section; field errors are prefixed with field (e.g.
// "backup.s3").
func (c S3Config) Validate(field string) error {
	var errs []error
	for i, e := range append([]string{c.Endpoint}, c.AllowedEndpoints...) {
		if e == "" && i == 0 {
			continue
		}
		if err := checkEndpoint(e); err != nil {
			name := field + ".endpoint"
			if i > 0 {
				name = fmt.Sprintf("%s.allowed_endpoints[%d]", field, i-1)
			}
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	for _, f := range []struct{ name, value string }{
		{"secret_access_key_file", c.SecretAccessKeyFile}, {"ca_file", c.CAFile},
	} {
		if f.value != "" && !strings.HasPrefix(f.value, "/") {
			errs = append(errs, fmt.Errorf("%s.%s: must be an absolute path, got %q", field, f.name, f.value))
		}
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKeyFile == "") {
		errs = append(errs, fmt.Errorf("%s: access_key_id and secret_access_key_file go together (or neither: the environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", field))
	}
	return errors.Join(errs...)
}

var endpointRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$`)

func checkEndpoint(e string) error {
	if !endpointRE.MatchString(e) {
		return fmt.Errorf("want host[:port] without a scheme, got %q", truncate(e))
	}
	return nil
}

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// CheckBucket checks an S3 bucket name.
func CheckBucket(b string) error {
	if !bucketRE.MatchString(b) {
		return fmt.Errorf("must be 3 to 63 characters: lower-case letters, digits, '.', '-'; got %q", truncate(b))
	}
	return nil
}

// CheckPrefix checks a key prefix: empty, or a key (see CheckKey) of at
// most 512 characters.
func CheckPrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > 512 {
		return fmt.Errorf("must be at most 512 characters, got %d", len(p))
	}
	return CheckKey(strings.TrimSuffix(p, "/"))
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// S3 is a Store in a bucket of an S3-compatible object store, under a key
// prefix.
type S3 struct {
	client   *s3Client
	endpoint string
	bucket   string
	prefix   string // "" or ending in '/'
}

var _ Store = (*S3)(nil)

// NewS3 returns a store in bucket under prefix at endpoint ("" = the
// configured one), which must be the configured endpoint or one of the
// allowed ones. lookupEnv reads the environment (os.LookupEnv).
func NewS3(cfg S3Config, endpoint, bucket, prefix string, lookupEnv func(string) (string, bool)) (*S3, error) {
	if endpoint == "" {
		endpoint = cfg.Endpoint
	}
	if endpoint == "" {
		return nil, errors.New("s3.endpoint: empty, and the agent's backup.s3.endpoint is not set")
	}
	if endpoint != cfg.Endpoint && !slices.Contains(cfg.AllowedEndpoints, endpoint) {
		return nil, fmt.Errorf("s3.endpoint: %q is neither backup.s3.endpoint nor in backup.s3.allowed_endpoints of this agent", truncate(endpoint))
	}
	if err := CheckBucket(bucket); err != nil {
		return nil, fmt.Errorf("s3.bucket: %w", err)
	}
	if err := CheckPrefix(prefix); err != nil {
		return nil, fmt.Errorf("s3.prefix: %w", err)
	}
	creds, err := loadCredentials(cfg, lookupEnv)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		if transport.TLSClientConfig, err = caConfig(cfg.CAFile); err != nil {
			return nil, err
		}
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	scheme := "https"
	if cfg.Insecure {
		scheme = "http"
	}
	if prefix != "" {
		prefix = strings.TrimSuffix(prefix, "/") + "/"
	}
	client := &s3Client{http: &http.Client{Transport: transport}, scheme: scheme, endpoint: endpoint, region: region,
		creds: creds, now: time.Now}
	return &S3{client: client, endpoint: endpoint, bucket: bucket, prefix: prefix}, nil
}

func loadCredentials(cfg S3Config, lookupEnv func(string) (string, bool)) (s3Credentials, error) {
	if cfg.AccessKeyID != "" {
		secret, err := readSecret(cfg.SecretAccessKeyFile)
		if err != nil {
			return s3Credentials{}, fmt.Errorf("backup.s3.secret_access_key_file: %w", err)
		}
		return s3Credentials{accessKeyID: cfg.AccessKeyID, secret: secret}, nil
	}
	id, _ := lookupEnv("AWS_ACCESS_KEY_ID")
	secret, _ := lookupEnv("AWS_SECRET_ACCESS_KEY")
	token, _ := lookupEnv("AWS_SESSION_TOKEN")
	if id == "" || secret == "" {
		return s3Credentials{}, errors.New("no S3 credentials: set backup.s3.access_key_id and secret_access_key_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the agent's environment")
	}
	return s3Credentials{accessKeyID: id, secret: secret, sessionToken: token}, nil
}

// readSecret reads a one-line secret from a file that only its owner may read.
func readSecret(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s has mode %#o: it must not be readable by group or others (chmod 600 it)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s must hold exactly one non-empty line", path)
	}
	return s, nil
}

func caConfig(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("backup.s3.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("backup.s3.ca_file: %s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// URI implements Store.
func (s *S3) URI(key string) string { return "s3://" + s.bucket + "/" + s.prefix + key }

// Put implements Store. An S3 object becomes visible only when its upload
// completes (a single PUT, or the completion of a multipart upload), so an
// interrupted Put leaves nothing under key. Without replace, an existing
// key is refused (checked just before the upload).
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64, replace bool) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if !replace {
		if _, err := s.Stat(ctx, key); err == nil {
			return fmt.Errorf("%s already exists", s.URI(key))
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	// Over plain HTTP each request is signed with its content's SHA-256,
	// over HTTPS TLS protects it; the read-back that follows every Put
	// checks what was stored.
	header := http.Header{"Content-Type": {"application/octet-stream"}}
	return s.explain(s.client.put(ctx, s.bucket, s.prefix+key, r, size, header))
}

// Open implements Store.
func (s *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	body, err := s.client.get(ctx, s.bucket, s.prefix+key)
	if err != nil {
		return nil, s.notFound(key, err)
	}
	return body, nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := CheckKey(key); err != nil {
		return Info{}, err
	}
	size, modified, err := s.client.head(ctx, s.bucket, s.prefix+key)
	if err != nil {
		return Info{}, s.notFound(key, err)
	}
	return Info{Key: key, Size: size, Modified: modified}, nil
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	entries, err := s.client.list(ctx, s.bucket, s.prefix+prefix)
	if err != nil {
		return nil, s.explain(err)
	}
	var out []Info
	for _, e := range entries {
		key := strings.TrimPrefix(e.Key, s.prefix)
		if strings.HasSuffix(key, "/") {
			continue // a "directory" marker
		}
		out = append(out, Info{Key: key, Size: e.Size, Modified: e.LastModified})
	}
	return out, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	return s.explain(s.client.remove(ctx, s.bucket, s.prefix+key))
}

func (s *S3) notFound(key string, err error) error {
	if notFoundError(err) {
		return fmt.Errorf("%s: %w", s.URI(key), ErrNotFound)
	}
	return s.explain(err)
}

// explain adds the endpoint and bucket to an S3 error.
func (s *S3) explain(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("s3 %s bucket %s: %w", s.endpoint, s.bucket, err)
}
