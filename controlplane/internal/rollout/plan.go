package rollout

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/limit"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
)

// Reasons a plan gives for leaving a host out.
const (
	ReasonOffline      = "offline"
	ReasonAtTarget     = "already at the target image"
	reasonNoContainer  = "container %q not reported by the agent"
	reasonNoLBAddress  = "no address for the load balancer (no %q label and no peer address)"
	reasonBadLBAddress = "upstream server %q is not valid: %v"
)

// Candidate is one host the selector matched, as the plan sees it.
type Candidate struct {
	AgentID string
	Online  bool
	// Reported is true when the agent ever sent a hello or a heartbeat, so
	// that Image (and a missing container) is known.
	Reported bool
	// HasContainer: the agent reports the service's container.
	HasContainer bool
	// Image is the container's image as last reported.
	Image string
	// Address is the host's address for the load balancer ("" unknown).
	Address string
	// HostPorts are the host ports the container publishes, as reported.
	HostPorts []int32
}

// PlanInput is everything a plan depends on.
type PlanInput struct {
	Image     string
	Container string
	// Strategy has its defaults filled in (withDefaults).
	Strategy *flotillav1.RolloutStrategy
	// LoadBalancer is nil when the service has none.
	LoadBalancer *flotillav1.LoadBalancer
	Hosts        []Candidate
	// InPlace keeps the hosts already at Image: an automatic restart
	// restarts hosts on the image they run.
	InPlace bool
}

// PlannedHost is one host of a plan.
type PlannedHost struct {
	AgentID string
	Batch   int
	// Server is the host's upstream server (address:port) when there is a
	// load balancer.
	Server        string
	ObservedImage string
	// Offline: the host was offline at planning time (WAIT policy).
	Offline bool
}

// Plan is a rollout's plan: batches in order, the hosts in them, and the
// hosts left out with the reason.
type Plan struct {
	Batches  []*flotillav1.Batch
	Excluded []*flotillav1.ExcludedHost
	Hosts    []PlannedHost
	// Offline lists the offline hosts the plan kept (WAIT) or that make the
	// start fail (FAIL), by agent ID.
	Offline []string
}

// MakePlan computes a plan. It is a pure, deterministic function of its
// input: hosts are taken in agent ID order, the canary hosts first, so a dry
// run and the real start on the same fleet give the same plan.
func MakePlan(in PlanInput) Plan {
	hosts := slices.Clone(in.Hosts)
	slices.SortFunc(hosts, func(a, b Candidate) int { return strings.Compare(a.AgentID, b.AgentID) })
	var p Plan
	policy := in.Strategy.GetOfflineHosts()
	var kept []PlannedHost
	for _, h := range hosts {
		exclude := func(reason string) {
			p.Excluded = append(p.Excluded, &flotillav1.ExcludedHost{AgentId: h.AgentID, Reason: reason})
		}
		if h.Reported && h.HasContainer && h.Image == in.Image && !in.InPlace {
			exclude(ReasonAtTarget)
			continue
		}
		if h.Reported && !h.HasContainer {
			exclude(fmt.Sprintf(reasonNoContainer, in.Container))
			continue
		}
		ph := PlannedHost{AgentID: h.AgentID, ObservedImage: h.Image}
		if lb := in.LoadBalancer; lb != nil {
			if h.Address == "" {
				exclude(fmt.Sprintf(reasonNoLBAddress, addressLabel(lb)))
				continue
			}
			ph.Server = net.JoinHostPort(h.Address, strconv.Itoa(int(livePort(lb, h.HostPorts))))
			drain := &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drain{Drain: &flotillav1.DrainCommand{
				Upstream: lb.GetUpstream(), Server: ph.Server}}}
			if err := commands.ValidateSpec("drain", drain); err != nil {
				exclude(fmt.Sprintf(reasonBadLBAddress, ph.Server, err))
				continue
			}
		}
		if !h.Online {
			switch policy {
			case flotillav1.OfflinePolicy_OFFLINE_POLICY_FAIL:
				p.Offline = append(p.Offline, h.AgentID)
				continue
			case flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT:
				p.Offline = append(p.Offline, h.AgentID)
				ph.Offline = true
			default:
				exclude(ReasonOffline)
				continue
			}
		}
		kept = append(kept, ph)
	}
	n := len(kept)
	if n == 0 {
		return p
	}
	canary := min(int(in.Strategy.GetCanary()), n)
	size := batchSize(in.Strategy, n)
	if in.Strategy.GetBlueGreen() != nil {
		// Every host switches at once: one batch.
		canary, size = 0, n
	}
	next := 0
	add := func(count int, isCanary bool) {
		b := &flotillav1.Batch{Index: int32(len(p.Batches)), Canary: isCanary}
		for _, h := range kept[next : next+count] {
			h.Batch = len(p.Batches)
			b.AgentIds = append(b.AgentIds, h.AgentID)
			p.Hosts = append(p.Hosts, h)
		}
		next += count
		p.Batches = append(p.Batches, b)
	}
	if canary > 0 {
		add(canary, true)
	}
	for next < n {
		add(min(size, n-next), false)
	}
	return p
}

// batchSize is the number of hosts per (non-canary) batch for n hosts.
func batchSize(s *flotillav1.RolloutStrategy, n int) int {
	switch b := s.GetBatch().(type) {
	case *flotillav1.RolloutStrategy_BatchPercent:
		return limit.PercentOf(n, b.BatchPercent)
	case *flotillav1.RolloutStrategy_BatchSize:
		return max(1, int(b.BatchSize))
	default:
		return 1
	}
}

func addressLabel(lb *flotillav1.LoadBalancer) string {
	if l := lb.GetAddressLabel(); l != "" {
		return l
	}
	return DefaultAddressLabel
}

// candidateOf describes an agent for the plan: its liveness, the image of
// the service's container (from the last heartbeat, else the hello) and its
// address for the load balancer (the address label, else the host part of
// the address its stream came from).
func candidateOf(a fleet.Agent, container string, lb *flotillav1.LoadBalancer) Candidate {
	c := Candidate{AgentID: a.Record.ID, Online: a.Record.State == store.AgentConnected}
	var list []*flotillav1.ManagedContainer
	switch {
	case a.LastHeartbeat != nil && len(a.LastHeartbeat.GetContainers()) > 0:
		list, c.Reported = a.LastHeartbeat.GetContainers(), true
	case a.Hello != nil:
		list, c.Reported = a.Hello.GetContainers(), true
	case a.LastHeartbeat != nil:
		c.Reported = true
	}
	for _, mc := range list {
		if mc.GetName() == container {
			c.HasContainer, c.Image, c.HostPorts = true, mc.GetImage(), mc.GetHostPorts()
			break
		}
	}
	if lb != nil {
		if v := a.Record.Labels[addressLabel(lb)]; v != "" {
			c.Address = v
		} else if peer := a.Record.PeerAddress; peer != "" {
			if host, _, err := net.SplitHostPort(peer); err == nil {
				c.Address = host
			} else {
				c.Address = peer
			}
		}
	}
	return c
}

// livePort is the load balancer's port that a host's container serves on:
// alternate_port when the container publishes it and not server_port (a
// blue-green or surge rollout moved it there), server_port otherwise.
func livePort(lb *flotillav1.LoadBalancer, hostPorts []int32) int32 {
	alt := lb.GetAlternatePort()
	if alt != 0 && slices.Contains(hostPorts, alt) && !slices.Contains(hostPorts, lb.GetServerPort()) {
		return alt
	}
	return lb.GetServerPort()
}
