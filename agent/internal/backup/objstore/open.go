package objstore

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// FromSpec opens the destination a command names: unset or local is the
// local directory localDir; s3 is a bucket reached with the agent's
// S3Config.
func FromSpec(dest *flotillav1.BackupDestination, s3 S3Config, localDir string) (Store, error) {
	if s := dest.GetS3(); s != nil {
		return NewS3(s3, s.GetEndpoint(), s.GetBucket(), s.GetPrefix(), os.LookupEnv)
	}
	return NewLocal(localDir)
}

// CheckSpec checks a destination's fields without opening it (no
// credentials, no network); field prefixes errors (e.g. "backup.destination").
func CheckSpec(field string, dest *flotillav1.BackupDestination) error {
	s := dest.GetS3()
	if s == nil {
		return nil
	}
	if err := CheckBucket(s.GetBucket()); err != nil {
		return fmt.Errorf("%s.s3.bucket: %w", field, err)
	}
	if err := CheckPrefix(s.GetPrefix()); err != nil {
		return fmt.Errorf("%s.s3.prefix: %w", field, err)
	}
	if e := s.GetEndpoint(); e != "" {
		if err := checkEndpoint(e); err != nil {
			return fmt.Errorf("%s.s3.endpoint: %w", field, err)
		}
	}
	return nil
}

// FromURI opens a destination written as a URI in the agent's
// configuration: "file:///absolute/dir" (or a bare absolute path), or
// "s3://bucket/prefix" with an optional "?endpoint=host:port" (default
// backup.s3.endpoint).
func FromURI(uri string, s3 S3Config) (Store, error) {
	if strings.HasPrefix(uri, "/") {
		return NewLocal(filepath.Clean(uri))
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("destination %q: %w", truncate(uri), err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("destination %q: a file URI names no host (file:///dir)", truncate(uri))
		}
		return NewLocal(u.Path)
	case "s3":
		return NewS3(s3, u.Query().Get("endpoint"), u.Host, strings.TrimPrefix(u.Path, "/"), os.LookupEnv)
	default:
		return nil, fmt.Errorf("destination %q: want file:///dir or s3://bucket/prefix", truncate(uri))
	}
}

// CheckURI checks a destination URI without opening it.
func CheckURI(uri string) error {
	if strings.HasPrefix(uri, "/") {
		return nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "file":
		if !filepath.IsAbs(u.Path) {
			return fmt.Errorf("want file:///absolute/dir, got %q", truncate(uri))
		}
		return nil
	case "s3":
		if err := CheckBucket(u.Host); err != nil {
			return fmt.Errorf("bucket: %w", err)
		}
		if e := u.Query().Get("endpoint"); e != "" {
			if err := checkEndpoint(e); err != nil {
				return err
			}
		}
		return CheckPrefix(strings.TrimPrefix(u.Path, "/"))
	default:
		return fmt.Errorf("want file:///dir or s3://bucket/prefix, got %q", truncate(uri))
	}
}
