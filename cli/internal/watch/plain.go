package watch

import (
	"fmt"
	"io"
	"strings"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// EventLine is one rollout event as one plain line.
func EventLine(ev *flotillav1.RolloutEvent, batches int) string {
	at := ev.GetAt().AsTime().Local().Format(time.TimeOnly)
	switch k := ev.GetKind().(type) {
	case *flotillav1.RolloutEvent_State:
		return withMessage(fmt.Sprintf("%s rollout %s", at, StateName(k.State.GetState())), k.State.GetMessage())
	case *flotillav1.RolloutEvent_Batch:
		verb := "started"
		if k.Batch.GetFinished() {
			verb = "finished"
		}
		return withMessage(fmt.Sprintf("%s batch %d of %d %s", at, k.Batch.GetIndex()+1, batches, verb), k.Batch.GetMessage())
	case *flotillav1.RolloutEvent_Host:
		h := k.Host
		line := fmt.Sprintf("%s host %s %s", at, h.GetAgentId(), StepName(h.GetStep()))
		if h.GetRollingBack() {
			line += " (rollback)"
		}
		return withMessage(line, h.GetMessage())
	case *flotillav1.RolloutEvent_Analysis:
		return withMessage(fmt.Sprintf("%s analysis %s %s", at, analysisWhere(k.Analysis.GetBatch()), k.Analysis.GetQuery()),
			fmt.Sprintf("%s, %s", strings.TrimPrefix(k.Analysis.GetVerdict().String(), "ANALYSIS_VERDICT_"), k.Analysis.GetMessage()))
	}
	return fmt.Sprintf("%s event %d", at, ev.GetSequence())
}

// analysisWhere names the gate of an analysis measurement: a batch (from
// 0 in the event) or the bake (-1).
func analysisWhere(batch int32) string {
	if batch < 0 {
		return "bake"
	}
	return fmt.Sprintf("batch %d", batch+1)
}

func withMessage(line, msg string) string {
	if msg == "" {
		return line
	}
	return line + ": " + msg
}

// PlainRolloutView prints one line per event.
type PlainRolloutView struct {
	// W is where the view is drawn.
	W io.Writer
	// Model is the rollout drawn, kept up to date by the caller.
	Model *RolloutModel
}

// Event prints ev.
func (v *PlainRolloutView) Event(ev *flotillav1.RolloutEvent) {
	fmt.Fprintln(v.W, EventLine(ev, v.Model.BatchCount()))
}

// Tick does nothing: plain lines are not redrawn.
func (v *PlainRolloutView) Tick(time.Time) {}

// Note prints a line that is not an event (a re-attach).
func (v *PlainRolloutView) Note(line string) { fmt.Fprintln(v.W, line) }

// Close does nothing.
func (v *PlainRolloutView) Close() {}

// RolloutView shows a followed rollout: Event after every event, Tick
// every second (live views redraw their clocks), Note for a line that is
// not an event.
type RolloutView interface {
	Event(*flotillav1.RolloutEvent)
	Tick(time.Time)
	Note(string)
	Close()
}
