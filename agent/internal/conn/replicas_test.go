package conn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/endpoint"
	"flotilla.dev/agent/internal/fakecp"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/logging"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// replicaDeadline bounds every wait of these tests: generous, since they
// run real connections on a loaded machine, and never slept out.
const replicaDeadline = 30 * time.Second

// startReplicas starts fake control planes sharing one CA, each on a TCP
// listener on 127.0.0.1.
func startReplicas(t *testing.T, n int) []*fakecp.Server {
	t.Helper()
	ca, err := fakecp.NewCA("replicas CA")
	if err != nil {
		t.Fatal(err)
	}
	var servers []*fakecp.Server
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, fakecp.StartWith(t, fakecp.Options{CA: ca, Listener: lis}))
	}
	return servers
}

func addrs(servers []*fakecp.Server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.Addr())
	}
	return out
}

// replicaClient is a Client run against real listeners until the test ends.
type replicaClient struct {
	logs *observer.ObservedLogs
	stop context.CancelFunc
}

// runReplicaClient runs a client with the endpoints eps. clock nil is real
// time, with a short backoff.
func runReplicaClient(t *testing.T, tlsCfg *tls.Config, eps endpoint.Config, clock clockwork.Clock) *replicaClient {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
	bo := backoff.Config{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	if clock != nil {
		bo = backoff.Config{Initial: time.Second, Max: 4 * time.Second, Jitter: backoff.NoJitter}
	}
	c, err := New(Config{
		Endpoints: eps,
		TLS:       fakecp.TLSFor(tlsCfg),
		Hello: func() *flotillav1.Hello {
			return &flotillav1.Hello{AgentId: agentID, Version: "1.2.3", Hostname: "web-1"}
		},
		Heartbeats: &countingSource{clock: clockwork.NewRealClock()},
		Commands:   nopCommands{},
		Backoff:    bo,
		Logger:     log,
		Clock:      clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &replicaClient{logs: logs, stop: stop}
}

// waitConnected polls until one of servers, other than the one at index
// skip, has welcomed want streams, and returns its index.
func waitConnected(t *testing.T, servers []*fakecp.Server, skip, want int) int {
	t.Helper()
	deadline := time.Now().Add(replicaDeadline)
	for time.Now().Before(deadline) {
		for i, s := range servers {
			if i != skip && s.Streams() >= want {
				return i
			}
		}
		time.Sleep(5 * time.Millisecond) // a poll interval, not a wait for the outcome
	}
	t.Fatalf("no replica welcomed the agent within %v", replicaDeadline)
	return -1
}

// waitConnectedLog polls until the agent's last "connected" log names an
// address other than not, and returns that address. The server counts a
// stream when it sends the welcome, the agent logs it once received.
func (rc *replicaClient) waitConnectedLog(t *testing.T, not string) string {
	t.Helper()
	deadline := time.Now().Add(replicaDeadline)
	for time.Now().Before(deadline) {
		if all := rc.logs.FilterMessage("connected").All(); len(all) > 0 {
			addr, _ := all[len(all)-1].ContextMap()[logging.ControlPlaneAddressKey].(string)
			if addr != "" && addr != not {
				return addr
			}
		}
		time.Sleep(5 * time.Millisecond) // a poll interval, not a wait for the outcome
	}
	t.Fatalf("the agent logged no connection to an address other than %q within %v", not, replicaDeadline)
	return ""
}

func TestMovesToAnotherReplicaWhenItsOwnDies(t *testing.T) {
	servers := startReplicas(t, 3)
	tlsCfg, err := servers[0].AgentTLSConfig(agentID)
	if err != nil {
		t.Fatal(err)
	}
	rc := runReplicaClient(t, tlsCfg, endpoint.Config{Addresses: addrs(servers), ServerName: fakecp.ServerName}, nil)

	first := waitConnected(t, servers, -1, 1)
	if got := rc.waitConnectedLog(t, ""); got != servers[first].Addr() {
		t.Fatalf("connected log names %s, want %s", got, servers[first].Addr())
	}
	servers[first].Stop() // the replica dies: its listener too
	second := waitConnected(t, servers, first, 1)
	if got := rc.waitConnectedLog(t, servers[first].Addr()); got != servers[second].Addr() {
		t.Fatalf("connected log names %s, want %s", got, servers[second].Addr())
	}
	// And again: the last replica left takes the agent.
	servers[second].Stop()
	last := servers[3-first-second]
	waitConnected(t, []*fakecp.Server{last}, -1, 1)
	if got := rc.waitConnectedLog(t, servers[second].Addr()); got != last.Addr() {
		t.Errorf("connected log names %s, want the last replica %s", got, last.Addr())
	}
}

// deadAddress is a 127.0.0.1 address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestDeadReplicasCostNoBackoff(t *testing.T) {
	servers := startReplicas(t, 1)
	tlsCfg, err := servers[0].AgentTLSConfig(agentID)
	if err != nil {
		t.Fatal(err)
	}
	// Whatever the random start, at most two dead addresses come before
	// the live one, and two failures are not a full cycle: the agent gets
	// there without a backoff, on a fake clock that never moves.
	for i := range 6 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			eps := endpoint.Config{
				Addresses:  []string{deadAddress(t), servers[0].Addr(), deadAddress(t)},
				ServerName: fakecp.ServerName,
			}
			before := servers[0].Streams()
			runReplicaClient(t, tlsCfg, eps, clockwork.NewFakeClock())
			waitConnected(t, servers, -1, before+1)
		})
	}
}

func TestBackoffOncePerFullCycle(t *testing.T) {
	eps := endpoint.Config{Addresses: []string{deadAddress(t), deadAddress(t), deadAddress(t)}, ServerName: fakecp.ServerName}
	clock := clockwork.NewFakeClock()
	rc := runReplicaClient(t, &tls.Config{}, eps, clock)
	ctx, cancel := context.WithTimeout(context.Background(), replicaDeadline)
	defer cancel()
	for cycle, delay := range []time.Duration{time.Second, 2 * time.Second} {
		if err := clock.BlockUntilContext(ctx, 1); err != nil { // the backoff timer
			t.Fatal(err)
		}
		logs := rc.logs.FilterMessage("disconnected").All()
		if len(logs) != 3*(cycle+1) {
			t.Fatalf("cycle %d: %d attempts before the backoff, want 3 per cycle", cycle, len(logs))
		}
		seen := map[string]bool{}
		for i, e := range logs[3*cycle:] {
			got := e.ContextMap()["backoff"].(time.Duration)
			if want := map[bool]time.Duration{true: delay, false: 0}[i == 2]; got != want {
				t.Errorf("cycle %d, attempt %d: backoff %v, want %v", cycle, i, got, want)
			}
			seen[e.ContextMap()[logging.ControlPlaneAddressKey].(string)] = true
		}
		if len(seen) != 3 {
			t.Errorf("cycle %d tried %v, want every address once", cycle, seen)
		}
		clock.Advance(delay)
	}
}

func TestFleetStartsSpreadOverReplicas(t *testing.T) {
	servers := startReplicas(t, 3)
	tlsCfg, err := servers[0].AgentTLSConfig(agentID)
	if err != nil {
		t.Fatal(err)
	}
	const agents = 15 // all at one replica by chance: 3 * 3^-15 < 1e-6
	for range agents {
		runReplicaClient(t, tlsCfg, endpoint.Config{Addresses: addrs(servers), ServerName: fakecp.ServerName}, nil)
	}
	deadline := time.Now().Add(replicaDeadline)
	total, used := 0, 0
	for time.Now().Before(deadline) {
		total, used = 0, 0
		for _, s := range servers {
			total += s.Streams()
			if s.Streams() > 0 {
				used++
			}
		}
		if total >= agents {
			break
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	if total < agents {
		t.Fatalf("%d of %d agents connected", total, agents)
	}
	if used < 2 {
		t.Errorf("all %d agents started at the same replica; want a random start", agents)
	}
}

// dnsResolver answers one name with several records.
type dnsResolver struct {
	name    string
	records []string
}

func (r dnsResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if host != r.name {
		return nil, errors.New("no such host")
	}
	return r.records, nil
}

// listenSamePort listens on port p of each of ips; on the loopback network
// every 127/8 address is local (Linux).
func listenSamePort(t *testing.T, ips []string) ([]net.Listener, int) {
	t.Helper()
	for range 20 { // another test may hold the port on one of the addresses
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		lis := []net.Listener{first}
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			lis = append(lis, l)
		}
		if len(lis) == len(ips) {
			return lis, port
		}
		for _, l := range lis {
			_ = l.Close()
		}
	}
	t.Skip("cannot listen on one port of 127.0.0.1, 127.0.0.2 and 127.0.0.3")
	return nil, 0
}

func TestOneNameWithSeveralRecords(t *testing.T) {
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	lis, port := listenSamePort(t, ips)
	ca, err := fakecp.NewCA("replicas CA")
	if err != nil {
		t.Fatal(err)
	}
	var servers []*fakecp.Server
	for _, l := range lis {
		servers = append(servers, fakecp.StartWith(t, fakecp.Options{CA: ca, Listener: l}))
	}
	tlsCfg, err := servers[0].AgentTLSConfig(agentID)
	if err != nil {
		t.Fatal(err)
	}
	// No server_name override: the certificate is checked against the
	// configured name, although the agent dials IP addresses.
	configured := net.JoinHostPort(fakecp.ServerName, strconv.Itoa(port))
	rc := runReplicaClient(t, tlsCfg, endpoint.Config{
		Addresses: []string{configured},
		Resolver:  dnsResolver{name: fakecp.ServerName, records: ips},
	}, nil)

	first := waitConnected(t, servers, -1, 1)
	if got := rc.waitConnectedLog(t, ""); got != servers[first].Addr() {
		t.Fatalf("connected log names %s, want the record %s", got, servers[first].Addr())
	}
	servers[first].Stop()
	second := waitConnected(t, servers, first, 1)
	if got := rc.waitConnectedLog(t, servers[first].Addr()); got != servers[second].Addr() {
		t.Fatalf("connected log names %s, want the record %s", got, servers[second].Addr())
	}
	all := rc.logs.FilterMessage("connected").All()
	if got := all[len(all)-1].ContextMap()["configured_address"]; got != configured {
		t.Errorf("connected log names the configured address %v, want %s", got, configured)
	}
}
