package conn

import (
	"context"
	"errors"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// MaxReportBytes bounds one JournalReport message: a journal larger than
// that (thousands of entries, restart results with container configs) goes
// out as several reports. It is half the largest message the control plane
// accepts (1 MiB), so that a report and its framing always fit.
const MaxReportBytes = 1 << 19

// ErrNotConnected is returned by SendEvent while the agent has no stream.
var ErrNotConnected = errors.New("conn: no stream to the control plane")

// Commands runs what the control plane asks for (commands.Runner).
type Commands interface {
	// Handle takes one delivery of a command; it must not wait for the
	// command to run.
	Handle(*flotillav1.Command)
	// Cancel stops a running command.
	Cancel(id, reason string)
	// Report is the journal report sent after every welcome.
	Report() *flotillav1.JournalReport
}

// SendEvent sends a command event on the current stream. It fails with
// ErrNotConnected between streams, or with the stream's error: the event is
// journaled, and the journal report of the next stream carries it.
func (c *Client) SendEvent(ev *flotillav1.CommandEvent) error {
	c.mu.Lock()
	s := c.current
	c.mu.Unlock()
	if s == nil {
		return ErrNotConnected
	}
	return s.send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_CommandEvent{CommandEvent: ev}})
}

// RefreshHeartbeat has the current stream send a heartbeat taken now, and
// returns once it is sent: what the agent sends next (a command's final
// event) reaches the control plane after it, which then already sees the
// containers as they are. It fails with ErrNotConnected between streams
// or when the stream ends first, or with ctx's error.
func (c *Client) RefreshHeartbeat(ctx context.Context) error {
	c.mu.Lock()
	s := c.current
	c.mu.Unlock()
	if s == nil {
		return ErrNotConnected
	}
	sent := make(chan struct{})
	select {
	case s.refresh <- sent:
	case <-s.ended:
		return ErrNotConnected
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-sent:
		return nil
	case <-s.ended:
		return ErrNotConnected
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attach makes s the stream that command events go through.
func (c *Client) attach(s *session) {
	c.mu.Lock()
	c.current = s
	c.mu.Unlock()
}

// detach stops sending command events through s.
func (c *Client) detach(s *session) {
	c.mu.Lock()
	if c.current == s {
		c.current = nil
	}
	c.mu.Unlock()
}

// handle acts on one message from the control plane.
func (s *session) handle(msg *flotillav1.ConnectResponse) error {
	switch body := msg.GetBody().(type) {
	case *flotillav1.ConnectResponse_Command:
		s.c.cfg.Commands.Handle(body.Command)
	case *flotillav1.ConnectResponse_Cancel:
		s.c.cfg.Commands.Cancel(body.Cancel.GetCommandId(), body.Cancel.GetReason())
	case *flotillav1.ConnectResponse_Welcome:
		s.log.Warn("unexpected second welcome ignored")
	default:
		// A newer control plane may send messages this agent does not know.
		s.log.Warn("unknown message from the control plane ignored")
	}
	return nil
}

// sendJournalReport attaches the session for command events and sends the
// journal report, before anything else follows the welcome. It holds the
// send lock throughout: an event journaled after the report was taken is
// sent after the report, never lost between the two.
func (s *session) sendJournalReport() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.c.attach(s)
	report := s.c.cfg.Commands.Report()
	parts := splitReport(report, MaxReportBytes)
	for _, part := range parts {
		err := s.stream.Send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_JournalReport{JournalReport: part}})
		if err != nil {
			return err
		}
	}
	s.log.Info("journal report sent", zap.Int("entries", len(report.GetEntries())), zap.Int("messages", len(parts)))
	return nil
}

// splitReport splits a report into reports of at most maxBytes each (an
// entry larger than that goes alone). There is always at least one report,
// so that the control plane hears one after every welcome.
func splitReport(report *flotillav1.JournalReport, maxBytes int) []*flotillav1.JournalReport {
	var (
		parts = []*flotillav1.JournalReport{{}}
		size  int
	)
	for _, ev := range report.GetEntries() {
		n := protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(ev))
		last := parts[len(parts)-1]
		if size+n > maxBytes && len(last.Entries) > 0 {
			last = &flotillav1.JournalReport{}
			parts = append(parts, last)
			size = 0
		}
		last.Entries = append(last.Entries, ev)
		size += n
	}
	return parts
}
