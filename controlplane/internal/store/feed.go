package store

// Topics a Feed wakes consumers on: one per sequenced table.
const (
	// TopicCommands: host_commands changed (ListHostCommandChanges).
	TopicCommands = "flotilla_commands"
	// TopicReports: command_reports grew (ListCommandReports).
	TopicReports = "flotilla_reports"
	// TopicRollouts: rollout events were appended.
	TopicRollouts = "flotilla_rollouts"
)

// Feed wakes the consumers of a sequenced table when other control planes
// on the same database wrote to it (PostgreSQL LISTEN/NOTIFY). A wake-up
// carries no data: the consumer catches up by reading the table after the
// last sequence number it saw. Wake-ups are lost while the feed reconnects,
// so a consumer also catches up on its own every so often; the feed wakes
// every consumer after each (re)connection, since what happened in between
// went unnoticed.
type Feed interface {
	// Subscribe returns a channel that receives a value (coalesced: at
	// most one waiting) whenever topic may have new rows, and a function
	// that ends the subscription.
	Subscribe(topic string) (wake <-chan struct{}, stop func())
}

// FeedOf returns s's feed, or nil for a store that has none (SQLite: one
// control plane, which sees its own writes).
func FeedOf(s any) Feed {
	if f, ok := s.(interface{ Feed() Feed }); ok {
		return f.Feed()
	}
	return nil
}
