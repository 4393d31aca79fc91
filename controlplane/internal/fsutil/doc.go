// Package fsutil writes files the way a crash-safe service must: to a
// temporary file in the same directory, fsynced, then renamed into place.
package fsutil
