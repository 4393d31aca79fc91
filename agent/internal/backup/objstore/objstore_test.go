package objstore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/agent/internal/backup/objstore"
	"flotilla.dev/agent/internal/s3test"
)

// stores returns a local store and a store on a real S3 server, with the
// function that gives the file behind a key (to corrupt it).
func stores(t *testing.T) map[string]struct {
	s    objstore.Store
	file func(key string) string
} {
	local, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := s3test.Start(t, "backups")
	return map[string]struct {
		s    objstore.Store
		file func(key string) string
	}{
		"local": {local, local.Path},
		"s3": {srv.Store(t, "backups", "prod/db-1"), func(key string) string {
			return filepath.Join(srv.Root, "backups", "prod", "db-1", filepath.FromSlash(key))
		}},
	}
}

func digest(b []byte) objstore.Digest {
	d, _ := objstore.DigestReader(bytes.NewReader(b))
	return d
}

func TestPutVerifiedListDelete(t *testing.T) {
	ctx := context.Background()
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := st.s
			content := bytes.Repeat([]byte("flotilla"), 100_000)
			if err := objstore.PutVerified(ctx, s, "app/app-1.dump", bytes.NewReader(content), digest(content), false); err != nil {
				t.Fatal(err)
			}
			// The same key again is refused without replace.
			err := objstore.PutVerified(ctx, s, "app/app-1.dump", bytes.NewReader(content), digest(content), false)
			if err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("second Put = %v, want already exists", err)
			}
			if err := objstore.PutVerified(ctx, s, "app/app-1.json", strings.NewReader("{}"), digest([]byte("{}")), false); err != nil {
				t.Fatal(err)
			}
			if err := objstore.PutVerified(ctx, s, "other/x", strings.NewReader("x"), digest([]byte("x")), false); err != nil {
				t.Fatal(err)
			}
			list, err := s.List(ctx, "app/")
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 2 || list[0].Key != "app/app-1.dump" || list[0].Size != int64(len(content)) || list[1].Key != "app/app-1.json" {
				t.Fatalf("List(app/) = %+v", list)
			}
			if !strings.Contains(s.URI("app/app-1.dump"), "app/app-1.dump") {
				t.Errorf("URI = %s", s.URI("app/app-1.dump"))
			}
			if err := s.Delete(ctx, "app/app-1.dump"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Stat(ctx, "app/app-1.dump"); !errors.Is(err, objstore.ErrNotFound) {
				t.Fatalf("Stat after Delete = %v, want ErrNotFound", err)
			}
			if err := s.Delete(ctx, "app/app-1.dump"); err != nil {
				t.Errorf("Delete of a missing object = %v", err)
			}
			if _, err := s.Open(ctx, "nope"); !errors.Is(err, objstore.ErrNotFound) {
				t.Errorf("Open(missing) = %v, want ErrNotFound", err)
			}
		})
	}
}

// A byte flipped in the stored object is caught by the read-back.
func TestVerifyCatchesCorruption(t *testing.T) {
	ctx := context.Background()
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			content := bytes.Repeat([]byte{1, 2, 3, 4}, 10_000)
			if err := objstore.PutVerified(ctx, st.s, "c/obj", bytes.NewReader(content), digest(content), false); err != nil {
				t.Fatal(err)
			}
			path := st.file("c/obj")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			err = objstore.Verify(ctx, st.s, "c/obj", digest(content))
			if !errors.Is(err, objstore.ErrMismatch) || !strings.Contains(err.Error(), "SHA-256") {
				t.Fatalf("Verify(corrupted) = %v, want a checksum mismatch", err)
			}
		})
	}
}

// A short reader (the source shrank under the upload) never leaves an
// object that claims to be complete.
func TestPutShortContentLeavesNothing(t *testing.T) {
	ctx := context.Background()
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			want := digest(make([]byte, 1000))
			err := objstore.PutVerified(ctx, st.s, "short/obj", bytes.NewReader(make([]byte, 500)), want, false)
			if err == nil {
				t.Fatal("PutVerified of 500 bytes claimed as 1000 succeeded")
			}
			if _, err := st.s.Stat(ctx, "short/obj"); !errors.Is(err, objstore.ErrNotFound) {
				t.Fatalf("Stat after a failed Put = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestS3RefusesWrongCredentialsAndUnlistedEndpoint(t *testing.T) {
	srv := s3test.Start(t, "backups")
	cfg := srv.Config()
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("wrong-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.SecretAccessKeyFile = bad
	s, err := objstore.NewS3(cfg, "", "backups", "", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	err = objstore.PutVerified(context.Background(), s, "k", strings.NewReader("x"), digest([]byte("x")), false)
	if err == nil || !strings.Contains(err.Error(), srv.Endpoint) {
		t.Fatalf("Put with a wrong secret = %v, want a refusal naming the endpoint", err)
	}
	if _, err := objstore.NewS3(srv.Config(), "evil.example.com", "backups", "", os.LookupEnv); err == nil ||
		!strings.Contains(err.Error(), "allowed_endpoints") {
		t.Fatalf("NewS3(unlisted endpoint) = %v, want a refusal", err)
	}
	s, err = objstore.NewS3(srv.Config(), "", "no-such-bucket", "", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), "k", strings.NewReader("x"), 1, false); err == nil {
		t.Fatal("Put into a missing bucket succeeded")
	}
}

const helperEnv = "FLOTILLA_OBJSTORE_KILL_HELPER"

// TestKillMidUpload kills -9 a process in the middle of an upload: no
// object appears under the key, in either store.
func TestKillMidUpload(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		return // the helper's own run of the test list
	}
	srv := s3test.Start(t, "backups")
	local := t.TempDir()
	for _, kind := range []string{"local", "s3"} {
		t.Run(kind, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$")
			cmd.Env = append(os.Environ(), helperEnv+"="+kind, "HELPER_LOCAL="+local,
				"HELPER_ENDPOINT="+srv.Endpoint, "HELPER_SECRET_FILE="+srv.SecretFile)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			halfway := false
			for sc.Scan() {
				if sc.Text() == "HALFWAY" {
					halfway = true
					break
				}
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if !halfway {
				t.Fatal("the helper never reached the middle of its upload")
			}
			var s objstore.Store
			if kind == "local" {
				s, _ = objstore.NewLocal(local)
			} else {
				s = srv.Store(t, "backups", "")
			}
			if _, err := s.Stat(context.Background(), "wal/000000010000000000000001"); !errors.Is(err, objstore.ErrNotFound) {
				t.Fatalf("after kill -9 mid-upload: Stat = %v, want ErrNotFound", err)
			}
			if list, err := s.List(context.Background(), ""); err != nil || len(list) != 0 {
				t.Fatalf("after kill -9 mid-upload: List = %+v, %v; want nothing", list, err)
			}
		})
	}
}

// TestKillHelper is the process TestKillMidUpload kills: it uploads 8 MiB
// whose second half never comes.
func TestKillHelper(t *testing.T) {
	kind := os.Getenv(helperEnv)
	if kind == "" {
		t.Skip("helper process of TestKillMidUpload")
	}
	var s objstore.Store
	var err error
	if kind == "local" {
		s, err = objstore.NewLocal(os.Getenv("HELPER_LOCAL"))
	} else {
		s, err = objstore.NewS3(objstore.S3Config{Endpoint: os.Getenv("HELPER_ENDPOINT"), AccessKeyID: s3test.AccessKey,
			SecretAccessKeyFile: os.Getenv("HELPER_SECRET_FILE"), Insecure: true}, "", "backups", "", os.LookupEnv)
	}
	if err != nil {
		t.Fatal(err)
	}
	const size = 8 << 20
	r := io.MultiReader(bytes.NewReader(make([]byte, size/2)), &stall{})
	_ = s.Put(context.Background(), "wal/000000010000000000000001", r, size, false)
	t.Fatal("the upload finished; it should have been killed")
}

// stall announces that the first half was read and blocks forever.
type stall struct{ said bool }

func (s *stall) Read([]byte) (int, error) {
	if !s.said {
		s.said = true
		fmt.Println("HALFWAY")
	}
	time.Sleep(time.Hour)
	return 0, io.EOF
}

// An object larger than the part size goes up as a multipart upload, from
// a file-like source (parts sent several at once) and from a plain reader
// (parts read in order), and reads back whole; a source that ends early
// leaves nothing, and the upload is aborted.
func TestS3MultipartUpload(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "backups")
	s := srv.Store(t, "backups", "mp")
	objstore.SetPartSize(s, 5<<20)
	content := make([]byte, 11<<20+123) // three parts, the last short
	for i := range content {
		content[i] = byte(i * 7 % 251)
	}
	want := digest(content)
	sources := map[string]func() io.Reader{
		"readerat": func() io.Reader { return bytes.NewReader(content) },
		"reader": func() io.Reader {
			return io.MultiReader(bytes.NewReader(content[:3<<20]), bytes.NewReader(content[3<<20:]))
		},
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			if err := objstore.PutVerified(ctx, s, name+"/db.dump", src(), want, false); err != nil {
				t.Fatal(err)
			}
			info, err := s.Stat(ctx, name+"/db.dump")
			if err != nil || info.Size != int64(len(content)) {
				t.Fatalf("Stat = %+v, %v; want %d bytes", info, err, len(content))
			}
			err = objstore.PutVerified(ctx, s, name+"/short.dump", bytes.NewReader(content[:8<<20]), want, false)
			if err == nil {
				t.Fatal("a multipart Put of 8 MiB claimed as 11 MiB succeeded")
			}
			if _, err := s.Stat(ctx, name+"/short.dump"); !errors.Is(err, objstore.ErrNotFound) {
				t.Fatalf("Stat after a failed multipart Put = %v, want ErrNotFound", err)
			}
		})
	}
	// The uploads of the short sources were aborted: none is left open.
	if n, err := objstore.OpenUploads(ctx, s); err != nil || n != 0 {
		t.Errorf("%d multipart uploads left open (%v), want 0", n, err)
	}
}
