package endpoint

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DefaultLookupTimeout bounds the resolution of one configured name.
const DefaultLookupTimeout = 10 * time.Second

// Endpoint is one place to dial.
type Endpoint struct {
	// Address is the host:port dialled: the IP address of one record once
	// a name was resolved, the configured address when it is an IP literal.
	Address string
	// Configured is the configured host:port the endpoint comes from.
	Configured string
	// ServerName is the name the control plane's certificate must carry.
	ServerName string
}

// String names the endpoint for logs and errors: "10.0.0.5:7443 (cp.example:7443)".
func (e Endpoint) String() string {
	if e.Address == e.Configured {
		return e.Address
	}
	return e.Address + " (" + e.Configured + ")"
}

// key identifies an endpoint in the rotation's order.
func (e Endpoint) key() string { return e.Address + " " + e.ServerName }

// Resolver looks up the addresses of a host; *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Config configures a Rotation.
type Config struct {
	// Addresses are the configured host:port entries (at least one).
	Addresses []string
	// ServerName, when set, is the name every certificate must carry,
	// instead of the host of each address.
	ServerName string
	// Resolver resolves host names; nil is net.DefaultResolver.
	Resolver Resolver
	// LookupTimeout bounds the resolution of one name; zero is
	// DefaultLookupTimeout.
	LookupTimeout time.Duration
	// Rand draws the rotation's order; nil uses math/rand/v2. Tests fix it.
	Rand func() uint64
	// Logger is told about names that could not be resolved; nil discards.
	Logger *zap.Logger
}

// ServerNameOf is the TLS server name of the configured host:port address:
// override when it is set, the host of address otherwise.
func ServerNameOf(address, override string) string {
	if override != "" {
		return override
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return address
	}
	return host
}

// Rotation hands out the endpoints to try, one attempt at a time. Its order
// is a random permutation of its own, stable while the records change:
// endpoints are ranked by a hash of their address under the rotation's
// random seed, and Next returns the endpoint ranked after the last one it
// returned, wrapping around. It is safe for concurrent use.
type Rotation struct {
	cfg  Config
	seed uint64

	mu       sync.Mutex
	known    map[string][]string // configured address → hosts of its last successful resolution
	hasLast  bool
	lastRank uint64 // rank of the endpoint Next returned last
	size     int    // endpoints of the last resolution
	tried    int    // attempts in the current cycle
}

// New validates cfg and returns a Rotation.
func New(cfg Config) (*Rotation, error) {
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("endpoint: at least one control plane address is required")
	}
	for i, a := range cfg.Addresses {
		if err := CheckAddress(a); err != nil {
			return nil, fmt.Errorf("endpoint: address %d: %w", i, err)
		}
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = DefaultLookupTimeout
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Uint64
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Rotation{cfg: cfg, seed: cfg.Rand(), known: map[string][]string{}}, nil
}

// CheckAddress checks that address is host:port with a port from 1 to
// 65535; its error says what is wrong, for the caller to name the field.
func CheckAddress(address string) error {
	if address == "" {
		return errors.New("is empty")
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil || host == "" {
		return fmt.Errorf("must be host:port, got %q", address)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q must be a number from 1 to 65535", port)
	}
	return nil
}

// Resolve resolves every configured address and returns all the endpoints,
// in the rotation's order. A name that cannot be resolved keeps the records
// of its last successful resolution; it is an error only when no address
// gives any endpoint.
func (r *Rotation) Resolve(ctx context.Context) ([]Endpoint, error) {
	var (
		eps  []Endpoint
		errs []error
		seen = map[string]bool{}
	)
	for _, configured := range r.cfg.Addresses {
		hosts, err := r.lookup(ctx, configured)
		if err != nil {
			errs = append(errs, err)
		}
		_, port, _ := net.SplitHostPort(configured) // checked by New
		name := ServerNameOf(configured, r.cfg.ServerName)
		for _, h := range hosts {
			ep := Endpoint{Address: net.JoinHostPort(h, port), Configured: configured, ServerName: name}
			if !seen[ep.key()] {
				seen[ep.key()] = true
				eps = append(eps, ep)
			}
		}
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("no control plane address could be resolved: %w", errors.Join(errs...))
	}
	slices.SortFunc(eps, func(a, b Endpoint) int {
		if c := cmp.Compare(r.rank(a), r.rank(b)); c != 0 {
			return c
		}
		return cmp.Compare(a.key(), b.key())
	})
	return eps, nil
}

// lookup returns the hosts of one configured address: the IP literal
// itself, or the records of its name.
func (r *Rotation) lookup(ctx context.Context, configured string) ([]string, error) {
	host, _, _ := net.SplitHostPort(configured)
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{host}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, r.cfg.LookupTimeout)
	defer cancel()
	hosts, err := r.cfg.Resolver.LookupHost(lctx, host)
	if err == nil && len(hosts) == 0 {
		err = fmt.Errorf("lookup %s: no addresses", host)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.known[configured] = hosts
		return hosts, nil
	}
	err = fmt.Errorf("resolving %s: %w", configured, err)
	if last := r.known[configured]; len(last) > 0 {
		r.cfg.Logger.Warn("cannot resolve a control plane address; using its last known records",
			zap.String("configured_address", configured), zap.Strings("records", last), zap.Error(err))
		return last, nil
	}
	r.cfg.Logger.Warn("cannot resolve a control plane address", zap.String("configured_address", configured), zap.Error(err))
	return nil, err
}

// Next resolves the addresses again and returns the endpoint to try now:
// the one ranked after the endpoint it returned last, or, on the first
// call, the first of the rotation's random order.
func (r *Rotation) Next(ctx context.Context) (Endpoint, error) {
	eps, err := r.Resolve(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.size = len(eps)
	if err != nil {
		return Endpoint{}, err
	}
	next := eps[0]
	if r.hasLast {
		for _, ep := range eps {
			if r.rank(ep) > r.lastRank {
				next = ep
				break
			}
		}
	}
	r.hasLast, r.lastRank = true, r.rank(next)
	return next, nil
}

// Failed records that the attempt at the endpoint Next returned last
// failed, and reports whether that completed a full cycle: as many failed
// attempts in a row as there are endpoints, counted since the last full
// cycle or the last connection. The caller backs off before its next
// attempt after a full cycle, and tries the next endpoint at once otherwise,
// so a dead replica costs one quick retry elsewhere, not a backoff.
func (r *Rotation) Failed() (fullCycle bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tried++
	if r.tried >= max(r.size, 1) {
		r.tried = 0
		return true
	}
	return false
}

// Connected records that the attempt at the endpoint Next returned last
// succeeded. When that connection ends, a new cycle starts with this
// endpoint counted as its first attempt.
func (r *Rotation) Connected() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tried = 1
}

// rank places an endpoint in the rotation's order.
func (r *Rotation) rank(ep Endpoint) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(ep.key()))
	return mix64(h.Sum64() ^ r.seed)
}

// mix64 is SplitMix64's finaliser: every input bit flips about half the
// output bits, so ranks under different seeds are as good as independent.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
