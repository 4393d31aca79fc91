//go:build unix

package fsutil

import (
	"io/fs"
	"syscall"
)

// ownerOf returns the user ID that owns the file info describes.
func ownerOf(info fs.FileInfo) (uid int, ok bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
