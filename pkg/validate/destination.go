package validate

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	s3BucketRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	s3EndpointRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$`)
	backupNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
)

// S3Bucket checks an S3 bucket name: 3 to 63 characters of lower-case
// letters, digits, '.' and '-', starting and ending with a letter or digit.
func S3Bucket(b string) error {
	if !s3BucketRE.MatchString(b) {
		return fmt.Errorf("must be 3 to 63 characters: lower-case letters, digits, '.', '-'; got %s", quote(b))
	}
	return nil
}

// S3Prefix checks an object key prefix: empty, or at most 512 characters
// of '/'-separated segments, none empty, "." or "..", no leading '/' and
// no control characters (a trailing '/' is allowed).
func S3Prefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > 512 {
		return fmt.Errorf("must be at most 512 characters, got %d", len(p))
	}
	key := strings.TrimSuffix(p, "/")
	if strings.HasPrefix(key, "/") || key == "" {
		return fmt.Errorf("must not start with '/', got %s", quote(p))
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%s has an empty, '.' or '..' segment", quote(p))
		}
	}
	if strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%s has control characters", quote(p))
	}
	return nil
}

// S3Endpoint checks an object store endpoint: host[:port] without a
// scheme.
func S3Endpoint(e string) error {
	if !s3EndpointRE.MatchString(e) {
		return fmt.Errorf("want host[:port] without a scheme, got %s", quote(e))
	}
	return nil
}

// BackupName checks a backup's name as the agents' catalog gives it (e.g.
// "app-20261207T020000Z"): letters, digits, '_', '.', '-', 1 to 128,
// starting with a letter or digit.
func BackupName(n string) error {
	if !backupNameRE.MatchString(n) {
		return fmt.Errorf("must be 1 to 128 letters, digits, '_', '.', '-', starting with a letter or digit; got %s", quote(n))
	}
	return nil
}
