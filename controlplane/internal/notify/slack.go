package notify

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"flotilla.dev/controlplane/internal/store"
)

// maxSlackEvents bounds the events one Slack message lists in blocks
// (Slack takes at most 50 blocks); the rest are counted.
const maxSlackEvents = 20

// slackMessage is an incoming webhook's payload.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string       `json:"type"`
	Text     *slackText   `json:"text,omitempty"`
	Elements []*slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// slackEmoji marks an event type's severity.
func slackEmoji(t string) string {
	switch t {
	case TypeRolloutSucceeded, TypeAgentBack:
		return ":white_check_mark:"
	case TypeRolloutStarted, TypeRolloutPaused, TypeTest:
		return ":information_source:"
	default:
		return ":rotating_light:"
	}
}

// renderSlack coalesces deliveries into one message, in the order their
// events occurred: text (the notification's preview) and blocks.
func renderSlack(ds []store.Delivery) ([]byte, error) {
	bodies := make([]Body, 0, len(ds))
	for _, d := range ds {
		b, err := decodeBody(d.Body)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", d.EventID, err)
		}
		bodies = append(bodies, b)
	}
	sort.SliceStable(bodies, func(i, j int) bool { return bodies[i].Timestamp.Before(bodies[j].Timestamp) })
	msg := slackMessage{}
	if len(bodies) == 1 {
		msg.Text = slackEmoji(bodies[0].Type) + " " + bodies[0].Data.Summary
	} else {
		msg.Text = fmt.Sprintf("%d Flotilla events, first: %s", len(bodies), bodies[0].Data.Summary)
		msg.Blocks = append(msg.Blocks, slackBlock{Type: "header", Text: &slackText{Type: "plain_text",
			Text: fmt.Sprintf("%d Flotilla events", len(bodies))}})
	}
	for i, b := range bodies {
		if i == maxSlackEvents {
			msg.Blocks = append(msg.Blocks, slackBlock{Type: "context", Elements: []*slackText{{Type: "mrkdwn",
				Text: fmt.Sprintf("…and %d more events", len(bodies)-maxSlackEvents)}}})
			break
		}
		msg.Blocks = append(msg.Blocks, slackEventBlocks(b)...)
	}
	return json.Marshal(msg)
}

// slackEventBlocks renders one event: its summary and reason, then its
// type, time and subject.
func slackEventBlocks(b Body) []slackBlock {
	text := slackEmoji(b.Type) + " *" + slackEscape(b.Data.Summary) + "*"
	if b.Data.Reason != "" {
		text += "\n" + slackEscape(b.Data.Reason)
	}
	ctx := []string{"`" + b.Type + "`", b.Timestamp.Format("2006-01-02 15:04:05Z07:00")}
	keys := make([]string, 0, len(b.Data.Subject))
	for k := range b.Data.Subject {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ctx = append(ctx, k+": "+slackEscape(b.Data.Subject[k]))
	}
	return []slackBlock{
		{Type: "section", Text: &slackText{Type: "mrkdwn", Text: text}},
		{Type: "context", Elements: []*slackText{{Type: "mrkdwn", Text: strings.Join(ctx, " · ")}}},
	}
}

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
