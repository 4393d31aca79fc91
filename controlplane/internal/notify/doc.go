// Package notify tells people about the fleet's incidents: a failed
// rollout, a lost agent, a failed backup. Event sources (the rollout
// engine, the fleet registry, the command manager) publish an Event; the
// Notifier writes it to the store's outbox with one delivery per
// subscription that wants it, in one transaction, and its delivery loop
// sends the deliveries to their sinks:
//
//   - a generic webhook, following the Standard Webhooks scheme
//     (https://www.standardwebhooks.com): headers webhook-id (the event ID,
//     the receiver's idempotency key), webhook-timestamp and
//     webhook-signature ("v1,<base64 HMAC-SHA256 of id.timestamp.body>",
//     one per secret, space-separated, so that secrets rotate without a
//     gap), and a versioned JSON body (see Body);
//   - a Slack incoming webhook: text and blocks, at most one message a
//     second per channel, a burst coalesced into one message.
//
// Deliveries are at least once: a delivery is claimed for one process
// (replicas on PostgreSQL claim different rows), retried with capped,
// jittered exponential backoff or after the sink's Retry-After, and given
// up (dead) after MaxAttempts or MaxAge. Events of one order key (a
// rollout) reach a webhook in order. A slow or dead sink holds only its
// own lane (bounded concurrency and a timeout per attempt): publishing
// never waits on a sink, so no rollout or agent stream does.
package notify
