package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"flotilla.dev/bench/internal/procfs"
)

// DefaultAgentsPerSim keeps a simulator process within a 20,000 open-file
// limit: each simulated agent holds a socket and its journal file.
const DefaultAgentsPerSim = 8000

// SimConfig configures a simulated fleet split over flotilla-sim processes.
type SimConfig struct {
	Agents int
	// HeartbeatInterval of every agent (0: the simulator's default, 10s).
	HeartbeatInterval time.Duration
	// StartRate is agents started per second over the whole fleet (0: all
	// at once).
	StartRate float64
	// MaxBackoff caps the agents' reconnection backoff (0: the agent's
	// default).
	MaxBackoff time.Duration
	// Labels are every agent's extra labels, "k=v,k=v".
	Labels string
	// PerProcess is the most agents one process runs.
	PerProcess int
	// Nice lowers the simulator processes' scheduling priority (0: as
	// the benchmark's), so that on a machine they share with the control
	// planes and the store, a fleet's connection storm does not starve
	// them: a real fleet's agents run on their own hosts.
	Nice int
	// SourceBase is the second octet of the first process's source
	// addresses: process i connects from 127.(SourceBase+i).0.1 and the
	// 31 addresses after it.
	SourceBase int
}

// Sims is a running simulated fleet.
type Sims struct {
	Agents int
	procs  []*simProc
	client *http.Client
}

type simProc struct {
	*Process
	url    string // status endpoint
	agents int
}

// SimSnapshot is a simulator's /stats.
type SimSnapshot struct {
	Started    int64            `json:"started"`
	Stopped    int64            `json:"stopped_with_error"`
	Heartbeats int64            `json:"heartbeats"`
	Received   map[string]int64 `json:"received"`
	Succeeded  int64            `json:"succeeded"`
	Failed     int64            `json:"failed"`
}

// ReceivedTotal is the number of commands received, all kinds.
func (s SimSnapshot) ReceivedTotal() int64 {
	var n int64
	for _, v := range s.Received {
		n += v
	}
	return n
}

// StartSims starts the simulated fleet against the control planes at
// addrs (their agent API; several replicas: each agent starts at a random
// one, see flotilla-sim) and waits until every process serves its status
// endpoint (not until the agents connect).
func (e *Env) StartSims(ctx context.Context, addrs []string, tokenFile, pin string, cfg SimConfig) (*Sims, error) {
	if len(addrs) == 0 {
		return nil, errors.New("simulators: no control-plane address")
	}
	per := cfg.PerProcess
	if per <= 0 {
		per = DefaultAgentsPerSim
	}
	nprocs := (cfg.Agents + per - 1) / per
	if cfg.SourceBase+nprocs > 255 {
		return nil, fmt.Errorf("-source-base %d: %d simulator processes need second octets up to %d, past 255", cfg.SourceBase, nprocs, cfg.SourceBase+nprocs-1)
	}
	s := &Sims{Agents: cfg.Agents, client: &http.Client{Timeout: time.Minute}}
	type started struct {
		url string
		err error
	}
	urls := make([]chan started, nprocs)
	first := 0
	for i := range nprocs {
		// Spread the agents evenly: 10,000 over two processes is 5,000
		// each, not 8,000 and 2,000.
		n := cfg.Agents/nprocs + btoi(i < cfg.Agents%nprocs)
		args := []string{
			"-control-plane", strings.Join(addrs, ","), "-ca-sha256", pin, "-join-token-file", tokenFile,
			"-agents", fmt.Sprint(n), "-first-index", fmt.Sprint(first),
			"-state-root", filepath.Join(e.Dir, fmt.Sprintf("sim-%d", i)),
			"-source-first", fmt.Sprintf("127.%d.0.1", cfg.SourceBase+i), "-source-count", "32",
			"-status-address", "127.0.0.1:0", "-log-level", "warn",
		}
		if cfg.HeartbeatInterval > 0 {
			args = append(args, "-heartbeat-interval", cfg.HeartbeatInterval.String())
		}
		if cfg.StartRate > 0 {
			args = append(args, "-start-rate", fmt.Sprint(cfg.StartRate/float64(nprocs)))
		}
		if cfg.MaxBackoff > 0 {
			args = append(args, "-max-backoff", cfg.MaxBackoff.String())
		}
		if cfg.Labels != "" {
			args = append(args, "-labels", cfg.Labels)
		}
		ch := make(chan started, 1)
		urls[i] = ch
		p, err := e.startNice(fmt.Sprintf("sim-%d", i), "flotilla-sim", cfg.Nice, args, nil, func(r io.Reader, log io.Writer) {
			// The first line names the status endpoint; the rest is log.
			line, err := bufio.NewReader(r).ReadString('\n')
			fmt.Fprint(log, line)
			if err != nil {
				ch <- started{err: fmt.Errorf("no status line on stdout: %w", err)}
				_, _ = io.Copy(log, r)
				return
			}
			u, perr := parseStatusLine(line)
			ch <- started{url: u, err: perr}
			_, _ = io.Copy(log, r)
		})
		if err != nil {
			return nil, err
		}
		s.procs = append(s.procs, &simProc{Process: p, agents: n})
		first += n
	}
	for i, ch := range urls {
		select {
		case st := <-ch:
			if st.err != nil {
				return nil, fmt.Errorf("%s: %w; see %s:\n%s", s.procs[i].Name, st.err, s.procs[i].LogPath, s.procs[i].Tail(10))
			}
			s.procs[i].url = st.url
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("%s printed no status line within 30s; see %s", s.procs[i].Name, s.procs[i].LogPath)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	e.Logf("%d agents in %d simulator processes", cfg.Agents, nprocs)
	return s, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parseStatusLine reads the endpoint from the simulator's first line,
// "flotilla-sim: status on http://127.0.0.1:40123, 5000 agents from index 0".
func parseStatusLine(line string) (string, error) {
	const prefix = "flotilla-sim: status on "
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix)
	if !ok {
		return "", fmt.Errorf("first line %q does not start with %q", strings.TrimSpace(line), prefix)
	}
	addr, _, _ := strings.Cut(rest, ",")
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("first line %q: %q is not an http URL", strings.TrimSpace(line), addr)
	}
	return u.String(), nil
}

// Check returns an error when a simulator process has ended.
func (s *Sims) Check() error {
	for _, p := range s.procs {
		if err := p.CheckRunning(); err != nil {
			return err
		}
	}
	return nil
}

// Processes is the number of simulator processes.
func (s *Sims) Processes() int { return len(s.procs) }

// Stats sums every process's counters.
func (s *Sims) Stats(ctx context.Context) (SimSnapshot, error) {
	total := SimSnapshot{Received: map[string]int64{}}
	for _, p := range s.procs {
		var snap SimSnapshot
		if err := s.get(ctx, p.url+"/stats", &snap); err != nil {
			return total, fmt.Errorf("%s: %w", p.Name, err)
		}
		total.Started += snap.Started
		total.Stopped += snap.Stopped
		total.Heartbeats += snap.Heartbeats
		total.Succeeded += snap.Succeeded
		total.Failed += snap.Failed
		for k, v := range snap.Received {
			total.Received[k] += v
		}
	}
	return total, nil
}

// CheckAgents returns an error when a process has ended or an agent
// stopped with an error (a refused join token, say): waiting for them to
// connect would be in vain.
func (s *Sims) CheckAgents(ctx context.Context) error {
	if err := s.Check(); err != nil {
		return err
	}
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	if st.Stopped > 0 {
		return fmt.Errorf("%d simulated agents stopped with an error; see the simulator logs (%s)", st.Stopped, s.procs[0].LogPath)
	}
	return nil
}

// Receipts returns every agent's receipt time (Unix ns, simulator clock)
// of the command whose target (image or database) is tag.
func (s *Sims) Receipts(ctx context.Context, tag string) ([]int64, error) {
	var all []int64
	for _, p := range s.procs {
		var times []int64
		if err := s.get(ctx, p.url+"/receipts?tag="+url.QueryEscape(tag), &times); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		all = append(all, times...)
	}
	return all, nil
}

// Sample sums the simulator processes' RSS and CPU time.
func (s *Sims) Sample() (procfs.Sample, error) {
	total := procfs.Sample{At: time.Now()}
	for _, p := range s.procs {
		one, err := procfs.Read(p.Pid())
		if err != nil {
			return total, err
		}
		total.RSS += one.RSS
		total.CPU += one.CPU
	}
	return total, nil
}

func (s *Sims) get(ctx context.Context, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
