package sim

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// listen opens a loopback listener that accepts and holds connections.
func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return l
}

// deadAddress is a loopback address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestSpreadKeepsAWorkingAddressAndMovesOnAfterAFailedDial(t *testing.T) {
	a, b := listen(t), listen(t)
	dead := deadAddress(t)
	addrs := []string{a.Addr().String(), dead, b.Addr().String()}
	s := newSpread(addrs, 4, netip.Addr{}) // 4 mod 3: starts at the dead one
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := s.dial(ctx, "ignored:1"); err == nil {
		t.Fatalf("dial to %s (nothing listening) succeeded", dead)
	}
	for range 3 { // the next one, then kept while it works
		c, err := s.dial(ctx, "ignored:1")
		if err != nil {
			t.Fatalf("dial after a failure: %v", err)
		}
		if got := c.RemoteAddr().String(); got != addrs[2] {
			t.Errorf("connected to %s, want %s (the address after the dead one)", got, addrs[2])
		}
		c.Close()
	}
	b.Close()
	if _, err := s.dial(ctx, "ignored:1"); err == nil {
		t.Fatal("dial to a closed listener succeeded")
	}
	c, err := s.dial(ctx, "ignored:1") // round robin: back to the first
	if err != nil {
		t.Fatalf("dial after the second failure: %v", err)
	}
	if got := c.RemoteAddr().String(); got != addrs[0] {
		t.Errorf("connected to %s, want %s (round robin wraps)", got, addrs[0])
	}
	c.Close()
}

func TestSpreadDialsFromTheSourceAddress(t *testing.T) {
	l := listen(t)
	src := netip.MustParseAddr("127.0.0.7")
	s := newSpread([]string{l.Addr().String(), l.Addr().String()}, 0, src)
	c, err := s.dial(context.Background(), "ignored:1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != src {
		t.Errorf("dialled from %s, want %s", got, src)
	}
}

func TestRandomStartSpreadsAFleet(t *testing.T) {
	const n, agents = 3, 3000
	var counts [n]int
	for range agents {
		counts[randomStart(n)]++
	}
	// Each of three gets a third: 1,000 ± 26 (one standard deviation);
	// 800 is 7.7 of them away, which a fair draw never reaches.
	for i, c := range counts {
		if c < 800 {
			t.Errorf("address %d chosen by %d of %d agents, want about %d: %v", i, c, agents, agents/n, counts)
		}
	}
}

func TestConfigRefusesAnEmptyAddress(t *testing.T) {
	_, err := New(Config{Agents: 1, StateRoot: t.TempDir(), Logger: zaptest.NewLogger(t), Addresses: []string{"127.0.0.1:1", ""}})
	if err == nil || !strings.Contains(err.Error(), "addresses") {
		t.Errorf("New with an empty address = %v, want an error naming addresses", err)
	}
}
