package client

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"flotilla.dev/cli/internal/config"
	"flotilla.dev/cli/internal/exitcode"
)

// TestNewRefusesBadFiles: a CA or operator certificate that cannot be read
// is invalid input, named, before anything is dialed.
func TestNewRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		conn config.Connection
		want string
	}{
		{config.Connection{Address: "x:1", CAFile: filepath.Join(dir, "missing.crt")}, "CA file"},
		{config.Connection{Address: "x:1", CAFile: notPEM}, "no PEM certificate"},
		{config.Connection{Address: "x:1", CertFile: notPEM, KeyFile: notPEM}, "operator certificate"},
	} {
		_, err := New(tc.conn, Options{})
		if exitcode.ForError(err) != exitcode.Invalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v; want invalid input naming %q", tc.conn, err, tc.want)
		}
	}
}

func TestBearer(t *testing.T) {
	md, err := bearer("fat_secret").GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer fat_secret" {
		t.Errorf("metadata %v, %v", md, err)
	}
	if !bearer("x").RequireTransportSecurity() {
		t.Error("a token may go over plain text")
	}
	c, err := New(config.Connection{Address: "127.0.0.1:1", Token: "fat_secret"}, Options{UserAgent: "flotilla/test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
}
