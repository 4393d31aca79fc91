package server

import (
	"context"

	"flotilla.dev/controlplane/internal/notify"
)

// WithNotifyConfig adjusts the notifier's configuration after the server
// filled it in (tests shorten its backoff and intervals).
func WithNotifyConfig(adjust func(*notify.Config)) Option {
	return func(o *options) { o.notify = adjust }
}

// buildNotifier builds the notifier the event sources (fleet, commands,
// rollouts) publish to; its delivery loop runs in Run. On PostgreSQL its
// claims carry this replica's holder ID, so that replicas deliver
// different rows.
func (s *Server) buildNotifier(context.Context) error {
	cfg := notify.Config{
		Store: s.store, Holder: s.holder, Logger: s.log.Named("notify"), Metrics: notify.NewMetrics(s.metrics), Now: s.opts.now,
	}
	if s.opts.notify != nil {
		s.opts.notify(&cfg)
	}
	var err error
	s.notifier, err = notify.New(cfg)
	return err
}

// Notifier exposes the notifier (tests publish through it).
func (s *Server) Notifier() *notify.Notifier { return s.notifier }
