package backup

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"flotilla.dev/agent/internal/backup/objstore"
	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// orphanAge is how old an archive without a manifest (an interrupted
// upload) must be before a prune deletes it; a backup in progress is
// younger.
const orphanAge = 24 * time.Hour

// maxRetentionCount bounds each retention rule.
const maxRetentionCount = 10000

func validateRetention(r *flotillav1.RetentionRules) error {
	if r.GetKeepLast() == 0 && r.GetKeepDaily() == 0 && r.GetKeepWeekly() == 0 && r.GetKeepMonthly() == 0 {
		return executor.Reject("prune.retention: set at least one of keep_last, keep_daily, keep_weekly, keep_monthly")
	}
	for _, f := range []struct {
		name string
		n    uint32
	}{{"keep_last", r.GetKeepLast()}, {"keep_daily", r.GetKeepDaily()}, {"keep_weekly", r.GetKeepWeekly()}, {"keep_monthly", r.GetKeepMonthly()}} {
		if f.n > maxRetentionCount {
			return executor.Reject("prune.retention.%s: at most %d, got %d", f.name, maxRetentionCount, f.n)
		}
	}
	if _, err := retentionZone(r.GetTimeZone()); err != nil {
		return executor.Reject("prune.retention.time_zone: %v", err)
	}
	return nil
}

func retentionZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if len(name) > 64 || strings.ContainsAny(name, " \\") {
		return nil, fmt.Errorf("not an IANA time zone name: %q", truncateText(name))
	}
	return time.LoadLocation(name)
}

func truncateText(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Retain decides which of backups (one type, newest first) to keep: it
// returns, for each backup, why it is kept (empty: it goes). The newest
// backup is always kept.
func Retain(backups []time.Time, r *flotillav1.RetentionRules, zone *time.Location) [][]string {
	why := make([][]string, len(backups))
	if len(backups) == 0 {
		return why
	}
	why[0] = append(why[0], "newest verified")
	for i := range backups {
		if uint32(i) < r.GetKeepLast() {
			why[i] = append(why[i], fmt.Sprintf("last %d", r.GetKeepLast()))
		}
	}
	buckets := []struct {
		rule string
		n    uint32
		key  func(time.Time) string
	}{
		{"daily", r.GetKeepDaily(), func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", r.GetKeepWeekly(), func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{"monthly", r.GetKeepMonthly(), func(t time.Time) string { return t.Format("2006-01") }},
	}
	for _, b := range buckets {
		seen := map[string]bool{}
		for i, t := range backups {
			if uint32(len(seen)) >= b.n {
				break
			}
			k := b.key(t.In(zone))
			if !seen[k] {
				seen[k] = true
				why[i] = append(why[i], b.rule)
			}
		}
	}
	return why
}

// prune applies the retention rules to the catalogued backups of name in
// store, dumps and base backups separately.
func (e *Executor) prune(ctx context.Context, name string, store objstore.Store, p *flotillav1.PruneCommand, progress executor.Progress) (*flotillav1.PruneResult, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("prune of database %s: "+format, append([]any{name}, args...)...)
	}
	zone, _ := retentionZone(p.GetRetention().GetTimeZone())
	backups, skipped, err := catalog(ctx, store, name)
	if err != nil {
		return nil, fail("%w", err)
	}
	for _, s := range skipped {
		e.log.Warn("a manifest cannot be read; prune leaves it alone", zap.String("database", name), zap.Error(s))
	}
	res := &flotillav1.PruneResult{Database: name, DryRun: p.GetDryRun()}
	var oldestBaseWAL string
	for _, typ := range []string{TypeDump, TypeBase} {
		var ofType []Manifest
		var times []time.Time
		for _, m := range backups {
			if m.BackupType() == typ {
				ofType = append(ofType, m)
				times = append(times, m.StartedAt)
			}
		}
		for i, why := range Retain(times, p.GetRetention(), zone) {
			sb := storedBackup(ofType[i])
			sb.KeptBy = why
			if len(why) > 0 {
				res.Kept = append(res.Kept, sb)
				if typ == TypeBase && ofType[i].StartWAL != "" && (oldestBaseWAL == "" || walSegmentLess(ofType[i].StartWAL, oldestBaseWAL)) {
					oldestBaseWAL = ofType[i].StartWAL
				}
				continue
			}
			res.Deleted = append(res.Deleted, sb)
			res.BytesFreed += ofType[i].SizeBytes
		}
	}
	sortStored(res.Kept)
	sortStored(res.Deleted)
	progress(&flotillav1.CommandProgress{Message: fmt.Sprintf("pruning %d of %d backups of %s", len(res.Deleted), len(backups), name)})
	if !p.GetDryRun() {
		if err := e.deleteBackups(ctx, store, backups, res.Deleted); err != nil {
			return nil, fail("%w", err)
		}
	}
	freed, err := e.pruneOrphans(ctx, store, name, backups, p.GetDryRun())
	if err != nil {
		return nil, fail("%w", err)
	}
	res.BytesFreed += freed
	if p.GetWal() && oldestBaseWAL != "" {
		n, b, err := e.pruneWAL(ctx, name, oldestBaseWAL, p.GetDryRun())
		if err != nil {
			return nil, fail("%w", err)
		}
		res.WalSegmentsDeleted, res.BytesFreed = n, res.BytesFreed+b
	}
	e.log.Info("prune finished", zap.String("database", name), zap.Bool("dry_run", p.GetDryRun()),
		zap.Int("kept", len(res.Kept)), zap.Int("deleted", len(res.Deleted)), zap.Uint64("bytes_freed", res.BytesFreed))
	return res, nil
}

func storedBackup(m Manifest) *flotillav1.StoredBackup {
	typ := flotillav1.BackupType_BACKUP_TYPE_DUMP
	if m.BackupType() == TypeBase {
		typ = flotillav1.BackupType_BACKUP_TYPE_BASE
	}
	return &flotillav1.StoredBackup{Name: m.Name, Type: typ, StartedAt: timestamppb.New(m.StartedAt),
		SizeBytes: m.SizeBytes, Sha256: m.SHA256, DestinationUri: m.URI}
}

func sortStored(s []*flotillav1.StoredBackup) {
	sort.SliceStable(s, func(i, j int) bool { return s[i].GetStartedAt().AsTime().After(s[j].GetStartedAt().AsTime()) })
}

// deleteBackups removes each deleted backup: its manifest first (it
// leaves the catalog), then its archive.
func (e *Executor) deleteBackups(ctx context.Context, store objstore.Store, all []Manifest, deleted []*flotillav1.StoredBackup) error {
	byName := map[string]Manifest{}
	for _, m := range all {
		byName[m.Name] = m
	}
	for _, d := range deleted {
		m := byName[d.GetName()]
		if err := store.Delete(ctx, manifestKey(m.Name)); err != nil {
			return fmt.Errorf("delete the manifest of %s: %w", m.Name, err)
		}
		if m.File != "" {
			if err := store.Delete(ctx, m.File); err != nil {
				return fmt.Errorf("delete %s (its manifest is gone; the next prune removes it): %w", store.URI(m.File), err)
			}
		}
		e.log.Info("backup deleted by retention", zap.String("backup", m.Name), zap.String("uri", store.URI(m.File)))
	}
	return nil
}

// pruneOrphans deletes the archives of name that no manifest names and
// that are older than orphanAge: uploads an interrupted backup left.
func (e *Executor) pruneOrphans(ctx context.Context, store objstore.Store, name string, backups []Manifest, dryRun bool) (uint64, error) {
	named := map[string]bool{}
	for _, m := range backups {
		named[m.File] = true
	}
	objs, err := store.List(ctx, name+"-")
	if err != nil {
		return 0, err
	}
	var freed uint64
	for _, o := range objs {
		archive := strings.HasSuffix(o.Key, archiveSuffix) || strings.HasSuffix(o.Key, baseSuffix)
		if !archive || strings.Contains(o.Key, "/") || named[o.Key] || e.clock.Since(o.Modified) < orphanAge {
			continue
		}
		// The object may belong to "app-2" when pruning "app": only the
		// archives whose manifest is missing altogether are orphans.
		if _, err := store.Stat(ctx, manifestKey(strings.TrimSuffix(strings.TrimSuffix(o.Key, archiveSuffix), baseSuffix))); err == nil {
			continue
		}
		freed += uint64(o.Size)
		if dryRun {
			continue
		}
		if err := store.Delete(ctx, o.Key); err != nil {
			return freed, fmt.Errorf("delete the orphan archive %s: %w", store.URI(o.Key), err)
		}
		e.log.Info("deleted an archive without a manifest (an interrupted backup)", zap.String("uri", store.URI(o.Key)))
	}
	return freed, nil
}

// pruneWAL deletes the archived WAL segments of name that come before
// oldest (the start of the oldest kept base backup), with their checksum
// objects. Timeline history files are always kept.
func (e *Executor) pruneWAL(ctx context.Context, name, oldest string, dryRun bool) (uint32, uint64, error) {
	store, err := OpenWAL(e.cfg, e.stateDir, name)
	if err != nil {
		return 0, 0, err
	}
	objs, err := store.List(ctx, walKey(name, ""))
	if err != nil {
		return 0, 0, err
	}
	var n uint32
	var freed uint64
	for _, o := range objs {
		file := strings.TrimPrefix(o.Key, walKey(name, ""))
		seg := strings.TrimSuffix(file, sumSuffix)
		if strings.HasSuffix(seg, ".history") || len(seg) < 24 || !walSegmentLess(seg[:24], oldest) {
			continue
		}
		freed += uint64(o.Size)
		if !strings.HasSuffix(file, sumSuffix) {
			n++
		}
		if dryRun {
			continue
		}
		if err := store.Delete(ctx, o.Key); err != nil {
			return n, freed, fmt.Errorf("delete %s: %w", store.URI(o.Key), err)
		}
	}
	return n, freed, nil
}
