package enroll

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Files in the state directory.
const (
	KeyFile   = "agent.key"  // the agent's private key, PKCS#8 PEM
	CertFile  = "agent.crt"  // the agent's client certificate, PEM
	CAFile    = "ca.crt"     // the CA bundle from RegisterResponse, PEM
	StateFile = "agent.json" // {"agent_id": ...}; written last, it marks a complete registration
)

// ErrNotRegistered means the state directory holds no registration yet.
var ErrNotRegistered = errors.New("not registered yet")

// Store is the agent's state directory.
type Store struct {
	dir string
}

// stateDoc is the content of StateFile.
type stateDoc struct {
	AgentID string `json:"agent_id"`
}

// OpenStore creates dir (0700) if needed and returns its Store. An existing
// directory readable by others is tightened to 0700: it holds a private key.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("enroll: state directory not set")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("enroll: state directory: %w", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("enroll: state directory: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("enroll: state directory %s is not a directory", dir)
	}
	if info.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("enroll: state directory: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// Dir is the state directory.
func (s *Store) Dir() string { return s.dir }

// files is what a registration writes.
type files struct {
	keyPEM, certPEM, caPEM []byte
	agentID                string
}

// load reads the registration files. It returns ErrNotRegistered when
// StateFile does not exist.
func (s *Store) load() (files, error) {
	var f files
	raw, err := os.ReadFile(s.path(StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return f, ErrNotRegistered
	}
	if err != nil {
		return f, err
	}
	var doc stateDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		return f, fmt.Errorf("%s: %w", StateFile, err)
	}
	f.agentID = doc.AgentID
	for name, dst := range map[string]*[]byte{KeyFile: &f.keyPEM, CertFile: &f.certPEM, CAFile: &f.caPEM} {
		if *dst, err = os.ReadFile(s.path(name)); err != nil {
			return f, err
		}
	}
	return f, nil
}

// save writes a registration, each file atomically. StateFile goes last: a
// crash half-way through a first registration leaves no StateFile (so the
// agent registers again), and one during a re-registration leaves a key that
// does not match the certificate, which Load rejects. Either way a half-written
// identity is never used.
func (s *Store) save(f files) error {
	doc, err := json.Marshal(stateDoc{AgentID: f.agentID})
	if err != nil {
		return err
	}
	for _, w := range []struct {
		name string
		data []byte
	}{
		{KeyFile, f.keyPEM},
		{CertFile, f.certPEM},
		{CAFile, f.caPEM},
		{StateFile, append(doc, '\n')},
	} {
		if err := writeFileAtomic(s.path(w.name), w.data, 0o600); err != nil {
			return fmt.Errorf("enroll: saving %s: %w", w.name, err)
		}
	}
	return nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }

// writeFileAtomic replaces path with data so that a reader, or a crash, sees
// either the old content or the new one, never a mix: write a temporary file
// in the same directory, fsync it, rename it over path, fsync the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
