//go:build linux || darwin

package hostmetrics

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// statfsUsage reads the usage of the filesystem that holds path, with
// df(1)'s arithmetic: used = blocks − free, and the percentage of
// used + available, since blocks reserved for root are neither.
func statfsUsage(path string) (DiskUsage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return DiskUsage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	return diskUsage(uint64(st.Bsize), uint64(st.Blocks), uint64(st.Bfree), uint64(st.Bavail)), nil
}
