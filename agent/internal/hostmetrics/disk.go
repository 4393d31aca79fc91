package hostmetrics

// diskUsage computes a filesystem's usage from statfs(2)'s block counts.
func diskUsage(blockSize, blocks, free, avail uint64) DiskUsage {
	u := DiskUsage{TotalBytes: blocks * blockSize}
	if free <= blocks {
		u.UsedBytes = (blocks - free) * blockSize
	}
	if usable := u.UsedBytes + avail*blockSize; usable > 0 {
		u.UsedPercent = float64(u.UsedBytes) / float64(usable) * 100
	}
	return u
}
