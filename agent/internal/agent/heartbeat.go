package agent

import (
	"context"
	"time"

	"flotilla.dev/agent/internal/health"
	"flotilla.dev/agent/internal/hostmetrics"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// heartbeatSource takes the readings of one heartbeat: host metrics, and the
// application's health when a health URL is configured.
type heartbeatSource struct {
	clock  clockwork.Clock
	log    *zap.Logger
	host   HostReader
	health HealthChecker // nil without a health check
	// closeHealth releases the real checker's connections; nil otherwise.
	closeHealth func()
	// inventory lists managed containers; databases reads PostgreSQL
	// statistics. Either may be nil.
	inventory ContainerLister
	databases DatabaseStatser

	// lastHealthy is the previous check's outcome, to log changes only.
	// Heartbeats are taken by one stream at a time, so no lock is needed.
	lastHealthy *bool
}

func newHeartbeatSource(cfg Config) (*heartbeatSource, error) {
	src := &heartbeatSource{clock: cfg.Clock, log: cfg.Logger.Named("health"), host: cfg.Host,
		health: cfg.AppHealth, inventory: cfg.Containers, databases: cfg.Databases}
	if src.host == nil {
		host, err := hostmetrics.New(hostmetrics.Config{
			DiskPaths: cfg.DiskPaths,
			Logger:    cfg.Logger.Named("hostmetrics"),
			Clock:     cfg.Clock,
		})
		if err != nil {
			return nil, err
		}
		src.host = host
	}
	if src.health == nil && cfg.Health.URL != "" {
		hc := health.Config{
			URL:       cfg.Health.URL,
			Timeout:   cfg.Health.Timeout,
			UserAgent: "flotilla-agent/" + cfg.Version,
			Clock:     cfg.Clock,
		}
		if p, ok := cfg.Containers.(HealthPorter); ok {
			hc.Port = p.HealthPort
		}
		checker, err := health.New(hc)
		if err != nil {
			return nil, err
		}
		src.health, src.closeHealth = checker, checker.Close
	}
	return src, nil
}

// Heartbeat implements conn.HeartbeatSource.
func (s *heartbeatSource) Heartbeat(ctx context.Context) *flotillav1.Heartbeat {
	hb := &flotillav1.Heartbeat{
		ObservedAt: timestamppb.New(s.clock.Now()),
		Host:       s.host.Collect(ctx),
	}
	if s.health != nil {
		hb.App = s.health.Check(ctx)
		s.logHealthChange(hb.App)
	}
	hb.Containers = s.containers(ctx)
	if s.databases != nil {
		hb.Databases = s.databases.Stats(ctx)
	}
	return hb
}

// inventoryTimeout bounds the Docker query of one heartbeat: a slow engine
// must not delay the heartbeat that proves the agent is alive.
const inventoryTimeout = 2 * time.Second

// resourcesTimeout bounds the resource readings of one heartbeat's
// containers (an inspect and a one-shot stats reading each); the
// containers not read by then go without resources.
const resourcesTimeout = 2 * time.Second

// containers lists the managed containers with their resource use, or
// nil when the list fails (logged at debug: the heartbeat still goes out).
// Containers whose resources could not be read go without.
func (s *heartbeatSource) containers(ctx context.Context) []*flotillav1.ManagedContainer {
	if s.inventory == nil {
		return nil
	}
	listCtx, cancel := context.WithTimeout(ctx, inventoryTimeout)
	defer cancel()
	cs, err := s.inventory.ManagedContainers(listCtx)
	if err != nil {
		s.log.Debug("listing managed containers failed", zap.Error(err))
		return nil
	}
	if r, ok := s.inventory.(ContainerResourceReader); ok && len(cs) > 0 {
		// Its own budget: a slow list must not leave the readings none.
		readCtx, cancel := context.WithTimeout(ctx, resourcesTimeout)
		defer cancel()
		if err := r.ContainerResources(readCtx, cs); err != nil {
			s.log.Debug("reading container resources failed", zap.Error(err))
		}
	}
	return cs
}

// logHealthChange logs when the application becomes healthy or unhealthy,
// not on every check.
func (s *heartbeatSource) logHealthChange(app *flotillav1.AppHealth) {
	healthy := app.GetHealthy()
	if s.lastHealthy != nil && *s.lastHealthy == healthy {
		return
	}
	s.lastHealthy = &healthy
	if healthy {
		s.log.Info("application healthy", zap.String("url", app.GetUrl()))
		return
	}
	s.log.Warn("application unhealthy",
		zap.String("url", app.GetUrl()),
		zap.String("error", app.GetError()),
		zap.Int32("http_status", app.GetHttpStatus()))
}

func (s *heartbeatSource) close() {
	if s.closeHealth != nil {
		s.closeHealth()
	}
}
