package fsutil

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestCheckPrivateDir(t *testing.T) {
	t.Run("private", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if tightened, err := CheckPrivateDir(dir); err != nil || tightened {
			t.Fatalf("CheckPrivateDir(0700) = %v, %v", tightened, err)
		}
	})
	t.Run("loose and empty is tightened", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		tightened, err := CheckPrivateDir(dir)
		if err != nil || !tightened {
			t.Fatalf("CheckPrivateDir(empty 0755) = %v, %v", tightened, err)
		}
		info, _ := os.Stat(dir)
		if info.Mode().Perm() != 0o700 {
			t.Fatalf("mode after tightening = %04o", info.Mode().Perm())
		}
	})
	t.Run("loose with content is refused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ca.key"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		_, err := CheckPrivateDir(dir)
		if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "chmod 700 "+dir) || !strings.Contains(err.Error(), "0750") {
			t.Fatalf("CheckPrivateDir(0750 with a file) = %v", err)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := CheckPrivateDir(f); err == nil {
			t.Fatal("a file passed as a data directory")
		}
	})
}

func TestCheckSecretFile(t *testing.T) {
	dir := t.TempDir()
	if err := CheckSecretFile(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("missing file: %v", err)
	}
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o400, true}, {0o640, false}, {0o644, false}, {0o700, false}, {0o606, false}} {
		p := filepath.Join(dir, "key")
		if err := os.WriteFile(p, []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tt.mode); err != nil {
			t.Fatal(err)
		}
		err := CheckSecretFile(p)
		if (err == nil) != tt.ok {
			t.Errorf("mode %04o: %v, want ok %v", tt.mode, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "chmod 600 "+p) {
			t.Errorf("mode %04o: error %q does not say how to fix it", tt.mode, err)
		}
		os.Remove(p)
	}
}

func TestCheckPrivateDirOwner(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	owner := os.Geteuid()
	if owner < 0 {
		t.Skip("no user IDs on this platform")
	}
	defer func(orig func() int) { geteuid = orig }(geteuid)

	// Another user than the owner (not root) is refused, with the fix.
	geteuid = func() int { return owner + 1 }
	_, err := CheckPrivateDir(dir)
	want := "chown -R " + strconv.Itoa(owner+1) + " " + dir
	if err == nil || !strings.Contains(err.Error(), "belongs to user "+strconv.Itoa(owner)) || !strings.Contains(err.Error(), want) {
		t.Fatalf("CheckPrivateDir as another user = %v, want the owner named and %q", err, want)
	}
	key := filepath.Join(dir, "ca.key")
	if err := os.WriteFile(key, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = CheckOwnFile(key, dir)
	want = "chown -R " + strconv.Itoa(owner+1) + " " + dir
	if err == nil || !strings.Contains(err.Error(), "belongs to user "+strconv.Itoa(owner)) || !strings.Contains(err.Error(), want) {
		t.Fatalf("CheckOwnFile as another user = %v, want the owner named and %q", err, want)
	}
	if err := CheckSecretFile(key); err != nil {
		t.Errorf("CheckSecretFile as another user = %v, want nil: files the operator gives may be anyone's", err)
	}
	if err := CheckOwnFile(filepath.Join(dir, "missing"), dir); err != nil {
		t.Errorf("CheckOwnFile(missing) = %v, want nil", err)
	}
	// Root may use any directory and file, and the owner its own.
	for _, euid := range []int{0, owner} {
		geteuid = func() int { return euid }
		if _, err := CheckPrivateDir(dir); err != nil {
			t.Errorf("CheckPrivateDir as user %d = %v, want nil", euid, err)
		}
		if err := CheckOwnFile(key, dir); err != nil {
			t.Errorf("CheckOwnFile as user %d = %v, want nil", euid, err)
		}
	}
}
