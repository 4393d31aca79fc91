package watch

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// CommandModel is a fleet command as its watch stream describes it.
type CommandModel struct {
	// Command is the last snapshot.
	Command *flotillav1.FleetCommand
	// Hosts by agent ID: the last state each was seen in.
	Hosts map[string]*CommandHostView
}

// CommandHostView is one host of a fleet command.
type CommandHostView struct {
	// AgentID is the host's agent.
	AgentID string
	// State and Message are the host's last state and its details, Since
	// when it entered it.
	State   flotillav1.CommandState
	Message string
	Since   time.Time
	// Progress is the last progress report of a running command.
	Progress *flotillav1.CommandProgress
}

// NewCommandModel is an empty model.
func NewCommandModel() *CommandModel { return &CommandModel{Hosts: map[string]*CommandHostView{}} }

// Apply takes one message of the watch stream into the model.
func (m *CommandModel) Apply(msg *flotillav1.WatchCommandResponse) {
	if s := msg.GetSnapshot(); s != nil {
		m.Command = s
		for _, h := range s.GetHosts() {
			v := m.host(h.GetAgentId())
			if v.State != h.GetState() {
				v.Since = h.GetStartedAt().AsTime()
			}
			v.State, v.Message = h.GetState(), h.GetMessage()
		}
		return
	}
	e := msg.GetEvent()
	v := m.host(e.GetAgentId())
	if v.State != e.GetEvent().GetState() {
		v.Since = e.GetEvent().GetAt().AsTime()
	}
	v.State, v.Message, v.Progress = e.GetEvent().GetState(), e.GetEvent().GetMessage(), e.GetEvent().GetProgress()
}

func (m *CommandModel) host(id string) *CommandHostView {
	v, ok := m.Hosts[id]
	if !ok {
		v = &CommandHostView{AgentID: id}
		m.Hosts[id] = v
	}
	return v
}

// RenderCommand is the live view of a fleet command at now: its state and
// counts, and the hosts in flight or failed, one a line.
func RenderCommand(m *CommandModel, now time.Time) []string {
	c := m.Command
	head := fmt.Sprintf("command %s  %s", c.GetId(), strings.TrimPrefix(c.GetState().String(), "FLEET_COMMAND_STATE_"))
	if sum := summaryLine(c.GetSummary()); sum != "" {
		head += "  " + sum
	}
	if !c.GetCreatedAt().AsTime().IsZero() {
		head += "  " + since(c.GetCreatedAt().AsTime(), now)
	}
	lines := []string{head}
	ids := make([]string, 0, len(m.Hosts))
	for id, h := range m.Hosts {
		switch h.State {
		case flotillav1.CommandState_COMMAND_STATE_PENDING, flotillav1.CommandState_COMMAND_STATE_SUCCEEDED,
			flotillav1.CommandState_COMMAND_STATE_SKIPPED:
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for i, id := range ids {
		if i == maxHostLines {
			lines = append(lines, fmt.Sprintf("  … %d more", len(ids)-i))
			break
		}
		h := m.Hosts[id]
		line := fmt.Sprintf("  %-24s %-10s %6s", id, strings.TrimPrefix(h.State.String(), "COMMAND_STATE_"), since(h.Since, now))
		if p := h.Progress; p != nil && p.GetTotal() > 0 {
			line += fmt.Sprintf("  %d%%", p.GetCurrent()*100/p.GetTotal())
		}
		if h.Message != "" {
			line += "  " + h.Message
		}
		lines = append(lines, line)
	}
	return lines
}

// CommandView shows a followed fleet command.
type CommandView interface {
	Message(*flotillav1.WatchCommandResponse)
	Tick(time.Time)
	Note(string)
}

// PlainCommandView prints one line per message.
type PlainCommandView struct {
	// W is where the lines go.
	W io.Writer
}

// Message prints msg.
func (v *PlainCommandView) Message(msg *flotillav1.WatchCommandResponse) {
	fmt.Fprintln(v.W, CommandLine(msg))
}

// Tick does nothing.
func (v *PlainCommandView) Tick(time.Time) {}

// Note prints line.
func (v *PlainCommandView) Note(line string) { fmt.Fprintln(v.W, line) }

// LiveCommandView redraws the command in place in a terminal.
type LiveCommandView struct {
	// W is the terminal, Width its width.
	W     io.Writer
	Width int
	// Model is the command drawn; Message keeps it up to date.
	Model *CommandModel

	frame frame
	notes []string
}

// Message takes msg into the model and redraws.
func (v *LiveCommandView) Message(msg *flotillav1.WatchCommandResponse) {
	v.Model.Apply(msg)
	v.Tick(time.Now())
}

// Tick redraws the clocks.
func (v *LiveCommandView) Tick(now time.Time) {
	if v.Model.Command == nil {
		return
	}
	v.frame.draw(v.W, v.Width, append(RenderCommand(v.Model, now), v.notes...))
}

// Note shows a line under the view until the next one.
func (v *LiveCommandView) Note(line string) {
	v.notes = append(v.notes[:0], line)
	v.Tick(time.Now())
}
