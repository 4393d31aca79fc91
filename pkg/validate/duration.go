package validate

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Duration returns a protobuf Duration as a time.Duration, or an error in
// the caller's terms when it is malformed (the protobuf library's own
// error text is for programmers).
func Duration(d *durationpb.Duration) (time.Duration, error) {
	if err := d.CheckValid(); err != nil {
		return 0, fmt.Errorf("not a valid duration (seconds %d, nanos %d): seconds within ±10000 years, nanos within ±999999999 and of the same sign",
			d.GetSeconds(), d.GetNanos())
	}
	return d.AsDuration(), nil
}

// Timestamp returns a protobuf Timestamp as a time.Time, or an error in
// the caller's terms when it is malformed.
func Timestamp(ts *timestamppb.Timestamp) (time.Time, error) {
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, fmt.Errorf("not a valid timestamp (seconds %d, nanos %d): between 0001-01-01 and 9999-12-31, nanos 0 to 999999999",
			ts.GetSeconds(), ts.GetNanos())
	}
	return ts.AsTime(), nil
}
