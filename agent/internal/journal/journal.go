package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// FileName is the journal's name in the agent's state directory.
const FileName = "journal.db"

// Defaults for the zero fields of Options.
const (
	// DefaultRetention keeps finished commands for a week: long enough for
	// any control-plane outage, short enough that the journal stays small.
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultMaxEntries caps the journal whatever the retention.
	DefaultMaxEntries = 10000
	// DefaultPruneInterval is the least time between two age-based prunes.
	DefaultPruneInterval = time.Hour
	// DefaultLockTimeout bounds the wait for the file lock, which another
	// agent process on the same state directory would hold.
	DefaultLockTimeout = 2 * time.Second
)

// schemaVersion is the layout of the records; a journal written by a newer
// layout is refused rather than misread.
const schemaVersion = "1"

var (
	bucketCommands = []byte("commands")
	bucketMeta     = []byte("meta")
	keyVersion     = []byte("schema_version")
)

// Errors returned by the journal.
var (
	// ErrNotFound is returned for a command ID the journal does not hold.
	ErrNotFound = errors.New("journal: no such command")
	// ErrFinished is returned by Update for a command whose state is
	// already final: a final state is never overwritten.
	ErrFinished = errors.New("journal: the command already finished")
)

// Options configures a Journal. Zero fields take the defaults.
type Options struct {
	// Retention is how long a finished command is kept after its last event.
	Retention time.Duration
	// MaxEntries caps the number of commands kept. Past it, the oldest
	// finished commands are pruned; commands in flight never are.
	MaxEntries int
	// PruneInterval is the least time between two age-based prunes; they
	// happen on Open and then on Begin.
	PruneInterval time.Duration
	// LockTimeout bounds the wait for the file lock on Open.
	LockTimeout time.Duration
	// Clock stamps entries and ages them; nil is real time.
	Clock  clockwork.Clock
	Logger *zap.Logger
}

func (o *Options) setDefaults() {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = DefaultPruneInterval
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
}

// Journal is an open journal file. It is safe for concurrent use.
type Journal struct {
	db   *bolt.DB
	opts Options
	log  *zap.Logger

	mu        sync.Mutex // guards count and lastPrune
	count     int        // entries in bucketCommands
	lastPrune time.Time
}

// Open opens (creating if needed) the journal at path with mode 0600, then
// prunes it. Only one process may have a journal open: a second one waits
// LockTimeout for the lock, then fails.
func Open(path string, opts Options) (*Journal, error) {
	opts.setDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: creating the state directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("journal: %s is locked by another process: is another flotilla-agent running with the same state_dir?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("journal: opening %s: %w (move the file aside to start with an empty journal)", path, err)
	}
	j := &Journal{db: db, opts: opts, log: opts.Logger.With(zap.String("journal", path))}
	if err := j.init(path); err != nil {
		_ = db.Close()
		return nil, err
	}
	if _, err := j.Prune(opts.Clock.Now()); err != nil {
		_ = db.Close()
		return nil, err
	}
	return j, nil
}

// init restricts the file's mode, creates the buckets on first use, checks
// the schema version and counts the entries.
func (j *Journal) init(path string) error {
	if err := restrictMode(path, j.log); err != nil {
		return err
	}
	return j.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if err := meta.Put(keyVersion, []byte(schemaVersion)); err != nil {
				return fmt.Errorf("journal: %w", err)
			}
		case string(v) != schemaVersion:
			return fmt.Errorf("journal: %s has schema version %s, this agent reads version %s: it was written by another agent version",
				path, v, schemaVersion)
		}
		cmds, err := tx.CreateBucketIfNotExists(bucketCommands)
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		j.count = cmds.Stats().KeyN
		return nil
	})
}

// restrictMode makes the journal readable by its owner only: the commands
// it records describe the host.
func restrictMode(path string, log *zap.Logger) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if info.Mode().Perm()&0o077 == 0 {
		return nil
	}
	log.Warn("journal file was group- or world-accessible; restricting it to 0600",
		zap.String("mode", info.Mode().Perm().String()))
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("journal: restricting %s to 0600: %w", path, err)
	}
	return nil
}

// Close closes the journal file. It waits for transactions in progress.
func (j *Journal) Close() error {
	if err := j.db.Close(); err != nil {
		return fmt.Errorf("journal: closing: %w", err)
	}
	return nil
}

// Len is the number of commands the journal holds.
func (j *Journal) Len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.count
}
