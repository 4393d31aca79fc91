package sim

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
)

// spread is one agent's choice among several control-plane addresses
// (replicas on one database), made as the agent makes it with
// control_plane.addresses: a random address first, so that a fleet
// spreads evenly over the replicas, kept while it can be dialled, and
// the next one, round robin, after a dial fails (a replica stopped or
// unreachable). Registration, certificate renewal and the stream share
// it, so an agent registers with the replica it then streams to.
type spread struct {
	addrs []string
	src   netip.Addr // zero: the kernel chooses

	mu  sync.Mutex
	cur int
}

// newSpread starts at addrs[start mod len(addrs)]; src, when valid, is the
// local address every connection is made from.
func newSpread(addrs []string, start int, src netip.Addr) *spread {
	return &spread{addrs: addrs, src: src, cur: start % len(addrs)}
}

// randomStart is a random index into n addresses.
func randomStart(n int) int { return rand.IntN(n) }

// current is the address the next dial goes to.
func (s *spread) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[s.cur]
}

// failed moves on from addr to the next address, unless another dial has
// moved on already.
func (s *spread) failed(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addrs[s.cur] == addr {
		s.cur = (s.cur + 1) % len(s.addrs)
	}
}

// dial is a gRPC context dialer: it ignores the target it is given (the
// first address, which only names the TLS server) and dials the agent's
// current address.
func (s *spread) dial(ctx context.Context, _ string) (net.Conn, error) {
	var d net.Dialer
	if s.src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.src, 0))
	}
	addr := s.current()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		s.failed(addr)
		return nil, err
	}
	return c, nil
}
