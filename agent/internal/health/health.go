package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	// DefaultTimeout bounds one check when Config.Timeout is zero.
	DefaultTimeout = 2 * time.Second
	// MaxBodyBytes is the largest body read: a health document is tiny, and a
	// misbehaving application must not make the agent buffer megabytes.
	MaxBodyBytes = 64 << 10
)

// Config configures a Checker.
type Config struct {
	// URL is the application's health endpoint (required).
	URL string
	// Timeout bounds the whole check, body included.
	Timeout time.Duration
	// UserAgent is sent with each request; default "flotilla-agent".
	UserAgent string
	// Client sends the requests; nil uses a dedicated client that ignores
	// proxy settings (the application runs next to the agent).
	Client *http.Client
	// Clock measures latency; nil uses the real clock.
	Clock clockwork.Clock
	// Port, when set and returning a port, replaces URL's port for a
	// check: a blue-green or surge rollout moved the application to
	// another published port (see the Docker executor's HealthPort).
	Port func() int
}

// Checker runs health checks against one URL. It is safe for concurrent use.
type Checker struct {
	cfg Config
}

// New fills the defaults of cfg, validates it and returns a Checker.
func New(cfg Config) (*Checker, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("health: URL %q is not an absolute http or https URL", cfg.URL)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("health: timeout %v is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "flotilla-agent"
	}
	if cfg.Client == nil {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.Proxy = nil
		cfg.Client = &http.Client{Transport: transport}
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	return &Checker{cfg: cfg}, nil
}

// Close releases idle connections kept for the next check.
func (c *Checker) Close() { c.cfg.Client.CloseIdleConnections() }

// Check performs one GET and returns its result. It never fails: whatever went
// wrong is in the result's Error, and Healthy is true only when nothing did.
func (c *Checker) Check(ctx context.Context) *flotillav1.AppHealth {
	start := c.cfg.Clock.Now()
	res := &flotillav1.AppHealth{Url: c.url(), CheckedAt: timestamppb.New(start)}

	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	code, body, err := c.fetch(ctx)
	res.Latency = durationpb.New(c.cfg.Clock.Since(start))
	res.HttpStatus = int32(code)
	if err != nil {
		res.Error = c.describe(ctx, err)
		return res
	}

	doc, parseErr := parse(body)
	if parseErr == nil {
		res.Status, res.Timestamp, res.Database, res.Cache = doc.Status, doc.Timestamp, doc.Database, doc.Cache
	}
	res.Error = verdict(code, doc, parseErr)
	res.Healthy = res.Error == ""
	return res
}

// fetch GETs the URL and reads at most MaxBodyBytes of the body.
func (c *Checker) fetch(ctx context.Context) (code int, body []byte, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(), nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("reading body: %w", err)
	}
	if len(body) > MaxBodyBytes {
		return resp.StatusCode, nil, errBodyTooLarge
	}
	return resp.StatusCode, body, nil
}

var errBodyTooLarge = fmt.Errorf("body exceeds %d bytes", MaxBodyBytes)

// describe turns a transport error into the short reason an operator reads.
func (c *Checker) describe(ctx context.Context, err error) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("timeout after %v", c.cfg.Timeout)
	case errors.Is(ctx.Err(), context.Canceled):
		return "check cancelled"
	case errors.Is(err, errBodyTooLarge):
		return err.Error()
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // the URL is reported in its own field
	}
	return "request failed: " + err.Error()
}

// url is the URL checked now: cfg.URL, with the port Port gives if any.
func (c *Checker) url() string {
	if c.cfg.Port == nil {
		return c.cfg.URL
	}
	p := c.cfg.Port()
	if p == 0 {
		return c.cfg.URL
	}
	u, err := url.Parse(c.cfg.URL)
	if err != nil {
		return c.cfg.URL
	}
	u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(p))
	return u.String()
}
