package watch

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// An analysis measurement is one plain line: where, which query, verdict
// and the comparison.
func TestEventLineAnalysis(t *testing.T) {
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.Local)
	for batch, want := range map[int32]string{
		-1: "09:00:00 analysis bake error-rate: FAIL, 0.05 > 0.01",
		0:  "09:00:00 analysis batch 1 error-rate: FAIL, 0.05 > 0.01",
	} {
		ev := &flotillav1.RolloutEvent{At: timestamppb.New(at), Kind: &flotillav1.RolloutEvent_Analysis{Analysis: &flotillav1.AnalysisResult{
			Query: "error-rate", Value: 0.05, Threshold: 0.01, Verdict: flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL, Message: "0.05 > 0.01", Batch: batch}}}
		if got := EventLine(ev, 3); got != want {
			t.Errorf("EventLine(batch %d) = %q, want %q", batch, got, want)
		}
	}
}
