package app

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/cli/internal/output"
)

func (a *app) notifyCommand() *cobra.Command {
	c := &cobra.Command{Use: "notify", Aliases: []string{"notifications"}, Short: "Notification subscriptions: events to webhooks or Slack (admin)"}
	sub := &cobra.Command{Use: "sub", Aliases: []string{"subs", "subscription", "subscriptions"}, Short: "Subscriptions: which events go to which sink"}
	sub.AddCommand(a.subCreateCommand(), a.subListCommand(), a.subGetCommand(), a.subUpdateCommand(),
		a.subDeleteCommand(), a.subTestCommand(), a.subDeliveriesCommand())
	c.AddCommand(sub)
	return c
}

// parseEvents reads event types: "rollout.failed", "rollout_failed",
// "ROLLOUT_FAILED" or the enum's full name.
func parseEvents(list []string) ([]flotillav1.NotificationEventType, error) {
	out := make([]flotillav1.NotificationEventType, 0, len(list))
	for _, s := range list {
		name := strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(strings.TrimSpace(s)))
		name = strings.TrimPrefix(name, "NOTIFICATION_EVENT_TYPE_")
		v, ok := flotillav1.NotificationEventType_value["NOTIFICATION_EVENT_TYPE_"+name]
		if !ok || v == 0 {
			return nil, usage("--events %q: unknown event type (want one of %s)", s, strings.Join(eventNames(), ", "))
		}
		out = append(out, flotillav1.NotificationEventType(v))
	}
	return out, nil
}

// eventNames are the event types as the CLI writes them: "rollout.failed".
func eventNames() []string {
	var names []string
	for v := int32(1); ; v++ {
		if _, ok := flotillav1.NotificationEventType_name[v]; !ok {
			return names
		}
		names = append(names, eventName(flotillav1.NotificationEventType(v)))
	}
}

// eventName is an event type as "rollout.failed" (the first underscore a
// dot: "rollout.rolled_back").
func eventName(t flotillav1.NotificationEventType) string {
	return strings.Replace(enumName(t, "NOTIFICATION_EVENT_TYPE_"), "_", ".", 1)
}

// sinkFlags are the flags naming a subscription's sink.
type sinkFlags struct {
	webhook, slack, slackFile string
	secrets                   []string
}

func (s *sinkFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.webhook, "webhook", "", "send to this Standard Webhooks endpoint (http or https)")
	fs.StringSliceVar(&s.secrets, "secret", nil, "the webhook's signing secret whsec_… (repeatable; on create, empty: one is generated)")
	fs.StringVar(&s.slack, "slack", "", "send to this Slack incoming webhook URL (a secret: prefer --slack-url-file)")
	fs.StringVar(&s.slackFile, "slack-url-file", "", "read the Slack incoming webhook URL from this file (\"-\": stdin)")
}

// sink is the sink the flags name; nil when none.
func (a *app) sink(s *sinkFlags) (*flotillav1.Sink, error) {
	slack := s.slack
	if s.slackFile != "" {
		if slack != "" {
			return nil, usage("--slack: not with --slack-url-file")
		}
		b, err := a.readFile("--slack-url-file", s.slackFile)
		if err != nil {
			return nil, err
		}
		slack = strings.TrimSpace(string(b))
	}
	switch {
	case s.webhook != "" && slack != "":
		return nil, usage("--webhook: not with --slack (one sink per subscription)")
	case s.webhook != "":
		return &flotillav1.Sink{Kind: &flotillav1.Sink_Webhook{Webhook: &flotillav1.WebhookSink{Url: s.webhook, Secrets: s.secrets}}}, nil
	case slack != "":
		if len(s.secrets) > 0 {
			return nil, usage("--secret: only with --webhook")
		}
		return &flotillav1.Sink{Kind: &flotillav1.Sink_Slack{Slack: &flotillav1.SlackSink{WebhookUrl: slack}}}, nil
	case len(s.secrets) > 0:
		return nil, usage("--secret: only with --webhook")
	}
	return nil, nil
}

func (a *app) subCreateCommand() *cobra.Command {
	var events []string
	var sf sinkFlags
	c := &cobra.Command{
		Use:   "create NAME --events E,… (--webhook URL | --slack-url-file FILE)",
		Short: "Subscribe a webhook or a Slack channel to event types",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := a.createSubscriptionRequest(args[0], events, &sf)
			if err != nil {
				return err
			}
			cl, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), cl.Notification.CreateSubscription, req)
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			fmt.Fprintf(a.env.Stdout, "subscription %s created\n", resp.GetSubscription().GetId())
			if s := resp.GetGeneratedSecret(); s != "" {
				fmt.Fprintf(a.env.Stdout, "signing secret (shown once, give it to the receiver): %s\n", s)
			}
			_, err = fmt.Fprint(a.env.Stdout, subscriptionKV(resp.GetSubscription()))
			return err
		},
	}
	c.Flags().StringSliceVar(&events, "events", nil, "event types, e.g. rollout.failed,agent.lost (see --help of notify sub ls)")
	sf.register(c.Flags())
	return c
}

// createSubscriptionRequest is the request of `notify sub create`.
func (a *app) createSubscriptionRequest(name string, events []string, sf *sinkFlags) (*flotillav1.CreateSubscriptionRequest, error) {
	if len(events) == 0 {
		return nil, usage("--events: required: at least one of %s", strings.Join(eventNames(), ", "))
	}
	ev, err := parseEvents(events)
	if err != nil {
		return nil, err
	}
	sink, err := a.sink(sf)
	if err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, usage("--webhook or --slack-url-file: required: where the events go")
	}
	return &flotillav1.CreateSubscriptionRequest{Name: name, Events: ev, Sink: sink}, nil
}

// subscriptionKV is a subscription as "key: value" lines.
func subscriptionKV(s *flotillav1.Subscription) string {
	var k kv
	k.add("id", s.GetId())
	k.add("name", s.GetName())
	k.add("events", eventList(s.GetEvents()))
	k.add("sink", s.GetSinkKind())
	k.add("endpoint", s.GetEndpoint())
	for _, sec := range s.GetSecrets() {
		k.add(fmt.Sprintf("secret %d", sec.GetIndex()), sec.GetFingerprint())
	}
	k.add("url fingerprint", s.GetUrlFingerprint())
	k.add("paused", yesNo(s.GetPaused()))
	k.add("created by", s.GetCreatedBy())
	k.add("created", ts(s.GetCreatedAt()))
	k.add("updated", ts(s.GetUpdatedAt()))
	return k.String()
}

func eventList(ev []flotillav1.NotificationEventType) string {
	names := make([]string, len(ev))
	for i, e := range ev {
		names[i] = eventName(e)
	}
	return strings.Join(names, ",")
}

func (a *app) subListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List notification subscriptions",
		Long:  "List notification subscriptions.\n\nEvent types: " + strings.Join(eventNames(), ", ") + ".",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), cl.Notification.ListSubscriptions, &flotillav1.ListSubscriptionsRequest{})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			t := output.NewTable(a.env.Stdout, "ID", "NAME", "SINK", "ENDPOINT", "EVENTS", "PAUSED", "CREATED")
			for _, s := range resp.GetSubscriptions() {
				t.Row(s.GetId(), s.GetName(), s.GetSinkKind(), s.GetEndpoint(), eventList(s.GetEvents()), yesNo(s.GetPaused()), ts(s.GetCreatedAt()))
			}
			return t.Flush()
		},
	}
}

func (a *app) subGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a notification subscription (secrets by fingerprint only)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), cl.Notification.GetSubscription, &flotillav1.GetSubscriptionRequest{SubscriptionId: args[0]})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprint(a.env.Stdout, subscriptionKV(resp.GetSubscription()))
			return err
		},
	}
}

func (a *app) subUpdateCommand() *cobra.Command {
	var events []string
	var sf sinkFlags
	var paused bool
	c := &cobra.Command{
		Use:   "update ID",
		Short: "Change a subscription's events, sink (secret rotation: --secret new --secret old) or --paused",
		Args:  cobra.ExactArgs(1),
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		cl, err := a.connect()
		if err != nil {
			return err
		}
		cur, err := call(cmd.Context(), cl.Notification.GetSubscription, &flotillav1.GetSubscriptionRequest{SubscriptionId: args[0]})
		if err != nil {
			return err
		}
		req, err := a.updateSubscriptionRequest(c.Flags(), cur.GetSubscription(), events, &sf, paused)
		if err != nil {
			return err
		}
		resp, err := call(cmd.Context(), cl.Notification.UpdateSubscription, req)
		if err != nil {
			return err
		}
		if done, err := a.emit(resp); done || err != nil {
			return err
		}
		fmt.Fprintf(a.env.Stdout, "subscription %s updated\n", args[0])
		_, err = fmt.Fprint(a.env.Stdout, subscriptionKV(resp.GetSubscription()))
		return err
	}
	c.Flags().StringSliceVar(&events, "events", nil, "the event types from now on (default: unchanged)")
	c.Flags().BoolVar(&paused, "paused", false, "pause (--paused) or resume (--paused=false); default: unchanged")
	sf.register(c.Flags())
	return c
}

// updateSubscriptionRequest is the request of `notify sub update`: the
// flags given over the subscription's current events and state (the API
// replaces both).
func (a *app) updateSubscriptionRequest(fs *pflag.FlagSet, cur *flotillav1.Subscription, events []string, sf *sinkFlags, paused bool) (*flotillav1.UpdateSubscriptionRequest, error) {
	req := &flotillav1.UpdateSubscriptionRequest{SubscriptionId: cur.GetId(), Events: cur.GetEvents(), Paused: cur.GetPaused()}
	if fs.Changed("events") {
		ev, err := parseEvents(events)
		if err != nil {
			return nil, err
		}
		if len(ev) == 0 {
			return nil, usage("--events: at least one event type")
		}
		req.Events = ev
	}
	if fs.Changed("paused") {
		req.Paused = paused
	}
	sink, err := a.sink(sf)
	if err != nil {
		return nil, err
	}
	req.Sink = sink
	return req, nil
}

func (a *app) subDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Remove a subscription (events queued for it are dropped)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), cl.Notification.DeleteSubscription, &flotillav1.DeleteSubscriptionRequest{SubscriptionId: args[0]})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.env.Stdout, "subscription %s deleted\n", args[0])
			return err
		},
	}
}

func (a *app) subTestCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "test ID",
		Short: "Queue a test event for a subscription (see its delivery with notify sub deliveries)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), cl.Notification.TestSubscription, &flotillav1.TestSubscriptionRequest{SubscriptionId: args[0]})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.env.Stdout, "test event %s queued; follow it: flotilla notify sub deliveries %s\n", resp.GetEventId(), args[0])
			return err
		},
	}
}

func (a *app) subDeliveriesCommand() *cobra.Command {
	var limit int32
	c := &cobra.Command{
		Use:   "deliveries ID",
		Short: "A subscription's delivery attempts, newest first, and the events still pending",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			resp, err := call(cmd.Context(), cl.Notification.ListDeliveryAttempts,
				&flotillav1.ListDeliveryAttemptsRequest{SubscriptionId: args[0], PageSize: limit})
			if err != nil {
				return err
			}
			if done, err := a.emit(resp); done || err != nil {
				return err
			}
			t := output.NewTable(a.env.Stdout, "EVENT", "TYPE", "ATTEMPT", "AT", "OUTCOME", "HTTP", "TOOK", "ERROR")
			for _, d := range resp.GetAttempts() {
				status := ""
				if d.GetHttpStatus() != 0 {
					status = fmt.Sprint(d.GetHttpStatus())
				}
				t.Row(d.GetEventId(), d.GetEventType(), fmt.Sprint(d.GetAttempt()), ts(d.GetAt()), d.GetOutcome(), status, dur(d.GetDuration()), d.GetError())
			}
			if err := t.Flush(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.env.Stdout, "pending: %d\n", resp.GetPending())
			return err
		},
	}
	c.Flags().Int32Var(&limit, "limit", 0, "at most this many attempts (1-500; default 50)")
	return c
}
