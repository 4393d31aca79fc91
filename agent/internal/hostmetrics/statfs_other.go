//go:build !linux && !darwin

package hostmetrics

import (
	"fmt"
	"runtime"
)

// statfsUsage is not implemented where statfs(2) has another shape; the
// agent runs on Linux, and macOS builds it for development.
func statfsUsage(path string) (DiskUsage, error) {
	return DiskUsage{}, fmt.Errorf("disk %s: disk usage is read on Linux and macOS, not on %s", path, runtime.GOOS)
}
