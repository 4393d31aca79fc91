package limit

import (
	"errors"
	"fmt"
	"math"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// Resolve turns l into a number of hosts out of n: a count as it is, a
// percentage of n rounded up and at least 1; def when l is nil or sets
// neither.
func Resolve(l *flotillav1.Limit, n, def int) int {
	switch k := l.GetKind().(type) {
	case *flotillav1.Limit_Count:
		return int(k.Count)
	case *flotillav1.Limit_Percent:
		return PercentOf(n, k.Percent)
	default:
		return def
	}
}

// PercentOf is percent of n hosts, rounded up and at least 1: a batch or a
// limit of a percentage always lets at least one host through.
func PercentOf(n int, percent int32) int {
	return max(1, int(math.Ceil(float64(n)*float64(percent)/100)))
}

// Check checks a Limit that may be nil (unset): a count of at least 1 or a
// percentage from 1 to 100. When it refuses l, sub is the field at fault
// below the Limit (".count", ".percent", or "" for the Limit itself) for
// the caller to append to the Limit's own field name.
func Check(l *flotillav1.Limit) (sub string, err error) {
	switch k := l.GetKind().(type) {
	case *flotillav1.Limit_Count:
		if k.Count < 1 {
			return ".count", fmt.Errorf("must be at least 1, got %d", k.Count)
		}
	case *flotillav1.Limit_Percent:
		if k.Percent < 1 || k.Percent > 100 {
			return ".percent", fmt.Errorf("must be 1-100, got %d", k.Percent)
		}
	case nil:
		if l != nil {
			return "", errors.New("set count or percent")
		}
	}
	return "", nil
}
