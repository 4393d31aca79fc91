package enroll

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"

	"flotilla.dev/agent/internal/statedir"
)

// StateFile is the pointer to the agent's current identity:
// {"agent_id": ..., "generation": N}. The key, certificate and CA bundle of
// generation N are in GenerationFiles(N).
//
// Every registration and renewal writes a new generation's files first and
// switches the pointer last, with one atomic rename: a crash at any point
// leaves the pointer on a complete, matching key and certificate (the old
// ones or the new ones), never on a mix. Files of other generations are
// then removed; a crash may leave some behind, which the next load removes.
const StateFile = "agent.json"

// GenerationFiles names the key (PKCS#8 PEM), client certificate (PEM) and
// CA bundle (PEM) of generation gen: agent-<gen>.key, agent-<gen>.crt and
// ca-<gen>.crt. Generation 0 is the layout of agents that predate
// renewal: agent.key, agent.crt and ca.crt.
func GenerationFiles(gen uint64) (key, cert, ca string) {
	if gen == 0 {
		return "agent.key", "agent.crt", "ca.crt"
	}
	n := strconv.FormatUint(gen, 10)
	return "agent-" + n + ".key", "agent-" + n + ".crt", "ca-" + n + ".crt"
}

// ErrNotRegistered means the state directory holds no registration yet.
var ErrNotRegistered = errors.New("not registered yet")

// Store is the agent's state directory. It is safe for concurrent use.
type Store struct {
	dir string

	mu  sync.Mutex // serializes saves, and guards gen
	gen uint64     // the generation StateFile pointed at when last read or written
}

// stateDoc is the content of StateFile.
type stateDoc struct {
	AgentID    string `json:"agent_id"`
	Generation uint64 `json:"generation,omitempty"`
}

// OpenStore creates dir (0700) if needed and returns its Store. An existing
// directory, or a file in it, that group or others can access is refused
// with the chmod that fixes it (see package statedir).
func OpenStore(dir string) (*Store, error) {
	if err := statedir.Ensure(dir); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the state directory.
func (s *Store) Dir() string { return s.dir }

// files is one identity as it is stored.
type files struct {
	keyPEM, certPEM, caPEM []byte
	agentID                string
}

// load reads the current identity's files. It returns ErrNotRegistered
// when StateFile does not exist. Files of other generations, left by a
// crash, are removed.
func (s *Store) load() (files, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f files
	doc, err := s.readDoc()
	if err != nil {
		return f, err
	}
	f.agentID = doc.AgentID
	key, cert, ca := GenerationFiles(doc.Generation)
	for name, dst := range map[string]*[]byte{key: &f.keyPEM, cert: &f.certPEM, ca: &f.caPEM} {
		if *dst, err = os.ReadFile(s.path(name)); err != nil {
			return f, err
		}
	}
	s.gen = doc.Generation
	s.removeStale(doc.Generation)
	return f, nil
}

// readDoc reads StateFile.
func (s *Store) readDoc() (stateDoc, error) {
	var doc stateDoc
	raw, err := os.ReadFile(s.path(StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return doc, ErrNotRegistered
	}
	if err != nil {
		return doc, err
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return doc, fmt.Errorf("%s: %w", StateFile, err)
	}
	return doc, nil
}

// save writes f as a new generation and makes it current (see StateFile).
func (s *Store) save(f files) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := s.gen + 1
	// The pointer on disk wins over memory: a Register without a Load
	// before it must not reuse the current generation's names.
	if doc, err := s.readDoc(); err == nil && doc.Generation >= gen {
		gen = doc.Generation + 1
	}
	doc, err := json.Marshal(stateDoc{AgentID: f.agentID, Generation: gen})
	if err != nil {
		return err
	}
	key, cert, ca := GenerationFiles(gen)
	for _, w := range []struct {
		name string
		data []byte
	}{
		{key, f.keyPEM},
		{cert, f.certPEM},
		{ca, f.caPEM},
		{StateFile, append(doc, '\n')}, // the switch: last
	} {
		if err := writeFileAtomic(s.path(w.name), w.data, statedir.FileMode); err != nil {
			return fmt.Errorf("enroll: saving %s: %w", s.path(w.name), err)
		}
	}
	s.gen = gen
	s.removeStale(gen)
	return nil
}

// staleCandidate matches the identity files of any generation, and the
// temporary files writeFileAtomic makes for them and for StateFile.
var staleCandidate = regexp.MustCompile(`^(?:agent|ca)(?:-\d+)?\.(?:key|crt)$|^\.(?:agent|ca)(?:-\d+)?\.(?:key|crt|json)\.tmp-`)

// removeStale removes the identity files of every generation but current,
// and the temporary files a crash left. It is best effort: a file it cannot
// remove is harmless (private, and never read), and the next load or save
// tries again. s.mu must be held.
func (s *Store) removeStale(current uint64) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	key, cert, ca := GenerationFiles(current)
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || name == key || name == cert || name == ca || !staleCandidate.MatchString(name) {
			continue
		}
		_ = os.Remove(s.path(name))
	}
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
