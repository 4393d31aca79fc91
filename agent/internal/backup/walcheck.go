package backup

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"flotilla.dev/agent/internal/backup/objstore"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// DefaultWALCheckInterval is how often the heartbeat's statistics list a
// database's WAL destination to check the archive's continuity: a listing
// of a month of archived WAL is thousands of objects.
const DefaultWALCheckInterval = 5 * time.Minute

// walCheckTimeout bounds one listing (in the background).
const walCheckTimeout = 30 * time.Second

// maxMissingListed bounds WalTimelineContinuity.missing.
const maxMissingListed = 10

// defaultSegmentSize is PostgreSQL's default wal_segment_size, used when the
// server's cannot be read.
const defaultSegmentSize = 16 << 20

// SetWALCheckInterval changes how often Stats lists the WAL destinations
// (DefaultWALCheckInterval); 0 lists at every call.
func (e *Executor) SetWALCheckInterval(d time.Duration) { e.walCheckInterval = d }

// walChecker caches each database's last continuity check and knows which
// ones are being listed.
type walChecker struct {
	mu      sync.Mutex
	checks  map[string]walCheck
	running map[string]bool
}

type walCheck struct {
	at        time.Time
	timelines []*flotillav1.WalTimelineContinuity
	err       error
}

// claim returns name's last check and whether the caller should start a
// new listing (none running, the last older than interval).
func (w *walChecker) claim(name string, now time.Time, interval time.Duration) (walCheck, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.checks[name]
	if w.running[name] || (ok && now.Sub(c.at) < interval) {
		return c, false
	}
	if w.running == nil {
		w.running = make(map[string]bool)
	}
	w.running[name] = true
	return c, true
}

// done records a finished listing.
func (w *walChecker) done(name string, c walCheck) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.checks == nil {
		w.checks = make(map[string]walCheck)
	}
	w.checks[name] = c
	delete(w.running, name)
}

// addWALContinuity fills a's archive_* fields for database name from the
// last listing of its WAL destination, and starts a new listing in the
// background when that one is older than the check interval: a listing of
// a large archive may take longer than a heartbeat may wait (the agent
// would look silent). The first heartbeats after a start carry none.
// segmentSize is the server's wal_segment_size in bytes.
func (e *Executor) addWALContinuity(name string, segmentSize uint64, a *flotillav1.WalArchiverStats) {
	c, start := e.walChecks.claim(name, e.clock.Now(), e.walCheckInterval)
	if start {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), walCheckTimeout)
			defer cancel()
			e.walChecks.done(name, e.checkWALContinuity(ctx, name, segmentSize, c))
		}()
	}
	if c.at.IsZero() {
		return
	}
	a.ArchiveTimelines = c.timelines
	a.ArchiveCheckedAt = timestamppb.New(c.at)
	if c.err != nil {
		// Whole enough to act on (the control plane takes up to 2048 bytes).
		if msg := c.err.Error(); len(msg) > 1024 {
			a.ArchiveCheckError = msg[:1024] + "…"
		} else {
			a.ArchiveCheckError = msg
		}
	}
}

// checkWALContinuity lists the archive of name; on failure it keeps prev's
// timelines and logs what failed, once per change of reason.
func (e *Executor) checkWALContinuity(ctx context.Context, name string, segmentSize uint64, prev walCheck) walCheck {
	c := walCheck{at: e.clock.Now(), timelines: prev.timelines}
	store, err := OpenWAL(e.cfg, e.stateDir, name)
	if err == nil {
		var objs []objstore.Info
		if objs, err = store.List(ctx, walKey(name, "")); err == nil {
			c.timelines = WALContinuity(objs, walKey(name, ""), segmentSize)
			logGaps(e.log, name, c.timelines, prev.timelines)
			return c
		}
	}
	c.err = fmt.Errorf("list the WAL archive: %w", err)
	if prev.err == nil || prev.err.Error() != c.err.Error() {
		e.log.Warn("cannot check the WAL archive's continuity", zap.String("database", name), zap.Error(c.err))
	}
	return c
}

// logGaps logs a timeline whose missing segments changed.
func logGaps(log *zap.Logger, name string, now, before []*flotillav1.WalTimelineContinuity) {
	was := make(map[uint32]uint64, len(before))
	for _, t := range before {
		was[t.GetTimeline()] = t.GetMissingSegments()
	}
	for _, t := range now {
		if t.GetMissingSegments() == was[t.GetTimeline()] {
			continue
		}
		if t.GetMissingSegments() == 0 {
			log.Info("the WAL archive's gap is closed", zap.String("database", name), zap.Uint32("timeline", t.GetTimeline()))
			continue
		}
		log.Error("the WAL archive has a gap: a point-in-time restore cannot replay past the first missing segment; "+
			"take a base backup now so that recovery points after the gap exist",
			zap.String("database", name), zap.Uint32("timeline", t.GetTimeline()),
			zap.Uint64("missing_segments", t.GetMissingSegments()), zap.Strings("first_missing", t.GetMissing()))
	}
}

// WALContinuity groups the archived segments among objs (keys under
// prefix) by timeline and finds, per timeline, the segments missing between
// the first and the last. A segment counts only with its checksum object;
// .partial, .backup and .history files are not segments of the sequence.
func WALContinuity(objs []objstore.Info, prefix string, segmentSize uint64) []*flotillav1.WalTimelineContinuity {
	if segmentSize == 0 {
		segmentSize = defaultSegmentSize
	}
	perID := (uint64(1) << 32) / segmentSize // segments per "xlogid"
	keys := make(map[string]bool, len(objs))
	for _, o := range objs {
		keys[strings.TrimPrefix(o.Key, prefix)] = true
	}
	byTimeline := map[uint32][]uint64{}
	for file := range keys {
		if len(file) != 24 || !walFileRE.MatchString(file) || !keys[file+sumSuffix] {
			continue
		}
		tli, _ := strconv.ParseUint(file[:8], 16, 32)
		hi, _ := strconv.ParseUint(file[8:16], 16, 32)
		lo, _ := strconv.ParseUint(file[16:], 16, 32)
		byTimeline[uint32(tli)] = append(byTimeline[uint32(tli)], hi*perID+lo)
	}
	out := make([]*flotillav1.WalTimelineContinuity, 0, len(byTimeline))
	for tli, segs := range byTimeline {
		out = append(out, timelineContinuity(tli, segs, perID))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetTimeline() < out[j].GetTimeline() })
	return out
}

// timelineContinuity describes one timeline's segment numbers.
func timelineContinuity(tli uint32, segs []uint64, perID uint64) *flotillav1.WalTimelineContinuity {
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	name := func(n uint64) string { return fmt.Sprintf("%08X%08X%08X", tli, n/perID, n%perID) }
	t := &flotillav1.WalTimelineContinuity{Timeline: tli, FirstSegment: name(segs[0]),
		LastSegment: name(segs[len(segs)-1]), ArchivedSegments: uint64(len(segs))}
	for i := 1; i < len(segs); i++ {
		t.MissingSegments += segs[i] - segs[i-1] - 1
		for n := segs[i-1] + 1; n < segs[i] && len(t.Missing) < maxMissingListed; n++ {
			t.Missing = append(t.Missing, name(n))
		}
	}
	return t
}
