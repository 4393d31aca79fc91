package backup

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"flotilla.dev/agent/internal/backup/objstore"
)

func TestWALContinuity(t *testing.T) {
	const prefix = "wal/app/"
	objects := func(files ...string) []objstore.Info {
		var out []objstore.Info
		for _, f := range files {
			out = append(out, objstore.Info{Key: prefix + f})
		}
		return out
	}
	withSums := func(segs ...string) []string {
		var out []string
		for _, s := range segs {
			out = append(out, s, s+sumSuffix)
		}
		return out
	}
	type want struct {
		timeline          uint32
		first, last       string
		archived, missing uint64
		listed            []string
	}
	for _, tt := range []struct {
		name        string
		files       []string
		segmentSize uint64
		want        []want
	}{
		{"continuous across an xlogid (16 MiB segments)",
			withSums("0000000100000000000000FE", "0000000100000000000000FF", "000000010000000100000000"), 16 << 20,
			[]want{{1, "0000000100000000000000FE", "000000010000000100000000", 3, 0, nil}}},
		{"a gap across an xlogid",
			withSums("0000000100000000000000FE", "000000010000000100000001"), 16 << 20,
			[]want{{1, "0000000100000000000000FE", "000000010000000100000001", 2, 2,
				[]string{"0000000100000000000000FF", "000000010000000100000000"}}}},
		{"64 MiB segments: 3F is the last of an xlogid",
			withSums("00000001000000000000003F", "000000010000000100000000"), 64 << 20,
			[]want{{1, "00000001000000000000003F", "000000010000000100000000", 2, 0, nil}}},
		{"a segment without its checksum object is missing; partial, backup, history files are not segments",
			append(withSums("000000010000000000000001", "000000010000000000000003", "00000002.history",
				"000000010000000000000004.partial", "000000010000000000000001.00000028.backup"), "000000010000000000000002"), 16 << 20,
			[]want{{1, "000000010000000000000001", "000000010000000000000003", 2, 1, []string{"000000010000000000000002"}}}},
		{"per timeline",
			withSums("000000010000000000000001", "000000010000000000000002", "000000020000000000000002", "000000020000000000000005"), 0,
			[]want{{1, "000000010000000000000001", "000000010000000000000002", 2, 0, nil},
				{2, "000000020000000000000002", "000000020000000000000005", 2, 2,
					[]string{"000000020000000000000003", "000000020000000000000004"}}}},
		{"a huge gap is counted, ten listed",
			withSums("000000010000000000000001", "000000010000100000000001"), 16 << 20,
			[]want{{1, "000000010000000000000001", "000000010000100000000001", 2, 0x1000*256 - 1, nil}}},
		{"nothing archived", nil, 16 << 20, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := WALContinuity(objects(tt.files...), prefix, tt.segmentSize)
			if len(got) != len(tt.want) {
				t.Fatalf("WALContinuity = %v, want %d timelines", got, len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if g.GetTimeline() != w.timeline || g.GetFirstSegment() != w.first || g.GetLastSegment() != w.last ||
					g.GetArchivedSegments() != w.archived || g.GetMissingSegments() != w.missing {
					t.Errorf("timeline %d = %v, want %+v", i, g, w)
				}
				if w.listed != nil && !slices.Equal(g.GetMissing(), w.listed) {
					t.Errorf("timeline %d missing = %v, want %v", i, g.GetMissing(), w.listed)
				}
				if len(g.GetMissing()) > maxMissingListed {
					t.Errorf("timeline %d lists %d missing segments, want at most %d", i, len(g.GetMissing()), maxMissingListed)
				}
			}
		})
	}
}

func TestTimelineHistory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	content := "1\t0/3000148\tno recovery target specified\n\n# a comment\n2\t0/5000000\tbefore 2026-12-07 08:15:00+00\n"
	if err := os.WriteFile(filepath.Join(dir, "pg_wal", "00000003.history"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := timelineHistory(dir, 3)
	if err != nil || len(h) != 2 || h[0].GetTimeline() != 1 || h[0].GetSwitchLsn() != "0/3000148" ||
		h[1].GetTimeline() != 2 || h[1].GetReason() != "before 2026-12-07 08:15:00+00" {
		t.Fatalf("timelineHistory = %v, %v", h, err)
	}
	if h, err := timelineHistory(dir, 1); h != nil || err != nil {
		t.Errorf("timeline 1 = %v, %v; want no history", h, err)
	}
	if _, err := timelineHistory(dir, 4); err == nil {
		t.Error("a missing history file read without error")
	}
	if err := os.WriteFile(filepath.Join(dir, "pg_wal", "00000005.history"), []byte("x\ty\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := timelineHistory(dir, 5); err == nil || !strings.Contains(err.Error(), "unreadable line") {
		t.Errorf("an unreadable history = %v", err)
	}
}
