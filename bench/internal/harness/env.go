package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Env is one benchmark's processes and temporary directory.
type Env struct {
	// BinDir holds flotilla-controlplane, flotilla-sim and flotilla-agent.
	BinDir string
	// Dir is the temporary directory: data directories, state roots, logs.
	Dir string
	// Out receives progress lines.
	Out io.Writer

	keep      bool
	profiling bool
	// store is the control planes' store driver; storeRoot the
	// filesystem directory its data goes in (the SQLite file inside Dir,
	// the PostgreSQL cluster next to Dir); pg the cluster once started.
	store     string
	storeRoot string
	pg        *postgresStore
	mu        sync.Mutex
	procs     []*Process
}

// Options configure an Env.
type Options struct {
	BinDir string
	// TempRoot is where the temporary directory is made; tmpfs
	// (/dev/shm) by default, so that the agents' fsynced journals and
	// the store do not measure a disk.
	TempRoot string
	// Keep leaves the temporary directory (logs, data) in place.
	Keep bool
	// Profiling turns on every control plane's profiling (pprof,
	// including mutex and block profiles, on its metrics address), for
	// finding what a figure costs; it costs some CPU itself, so figures
	// measured with it are not comparable.
	Profiling bool
	// Store is the control planes' store driver: StoreSQLite (default)
	// or StorePostgres, a throwaway PostgreSQL cluster made under
	// TempRoot when the first control plane starts.
	Store string
	Out   io.Writer
}

// New makes the temporary directory and checks that the binaries exist.
func New(name string, o Options) (*Env, error) {
	for _, b := range []string{"flotilla-controlplane", "flotilla-sim", "flotilla-agent"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			return nil, fmt.Errorf("-bin: %w (run make build)", err)
		}
	}
	store := o.Store
	if store == "" {
		store = StoreSQLite
	}
	if err := CheckStore(store); err != nil {
		return nil, err
	}
	root := TempRoot(o.TempRoot)
	dir, err := os.MkdirTemp(root, "flotilla-bench-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	return &Env{BinDir: o.BinDir, Dir: dir, Out: out, keep: o.Keep, profiling: o.Profiling, store: store, storeRoot: root}, nil
}

// TempRoot is where the temporary directories go: root, or by default
// /dev/shm (tmpfs) when there is one, else the system's temporary
// directory.
func TempRoot(root string) string {
	if root != "" {
		return root
	}
	if _, err := os.Stat("/dev/shm"); err == nil {
		return "/dev/shm"
	}
	return os.TempDir()
}

// Logf prints a progress line.
func (e *Env) Logf(format string, args ...any) {
	fmt.Fprintf(e.Out, "  "+format+"\n", args...)
}

// Close stops every process (the last started first, simulators and
// agents before the control plane they talk to) and removes the
// temporary directory. With failed, it first prints the end of every
// process's log.
func (e *Env) Close(failed bool) {
	e.mu.Lock()
	procs := e.procs
	e.procs = nil
	e.mu.Unlock()
	// Stop the fleet in parallel: each process may take seconds to end.
	var wg sync.WaitGroup
	var cps []*Process
	for _, p := range procs {
		if p.controlPlane {
			cps = append(cps, p)
			continue
		}
		wg.Go(func() { p.Stop(10 * time.Second) })
	}
	wg.Wait()
	for _, p := range cps {
		p.Stop(20 * time.Second)
	}
	e.closeStore()
	if failed {
		for _, p := range procs {
			if errs := p.Errors(10); errs != "" {
				fmt.Fprintf(e.Out, "---- first errors of %s (%s)\n%s", p.Name, p.LogPath, errs)
			}
			fmt.Fprintf(e.Out, "---- last lines of %s (%s)\n%s", p.Name, p.LogPath, p.Tail(25))
		}
	}
	if e.keep {
		fmt.Fprintf(e.Out, "  kept %s\n", e.Dir)
		return
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		fmt.Fprintf(e.Out, "  removing %s: %v\n", e.Dir, err)
	}
}

// Process is a child process whose output goes to a log file.
type Process struct {
	Name    string
	LogPath string
	Started time.Time

	cmd          *exec.Cmd
	log          *os.File
	controlPlane bool
	done         chan struct{}
	err          error // set before done closes
}

// start runs bin with args; its stderr, and its stdout unless stdout is
// given, go to a log file named after name. stdout, when given, reads the
// process's standard output and must consume it to the end.
func (e *Env) start(name, bin string, args, env []string, stdout func(io.Reader, io.Writer)) (*Process, error) {
	return e.startNice(name, bin, 0, args, env, stdout)
}

// startNice is start with the process's scheduling priority lowered by
// nice (0: unchanged), through nice(1), which execs the binary in place.
func (e *Env) startNice(name, bin string, nice int, args, env []string, stdout func(io.Reader, io.Writer)) (*Process, error) {
	logPath := filepath.Join(e.Dir, name+".log")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(e.BinDir, bin), args...)
	if nice > 0 {
		cmd = exec.Command("nice", append([]string{"-n", fmt.Sprint(nice), filepath.Join(e.BinDir, bin)}, args...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = log
	cmd.SysProcAttr = sysProcAttr()
	var pipe io.ReadCloser
	if stdout != nil {
		if pipe, err = cmd.StdoutPipe(); err != nil {
			log.Close()
			return nil, err
		}
	} else {
		cmd.Stdout = log
	}
	fmt.Fprintf(log, "# %s %s\n", cmd.Path, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &Process{Name: name, LogPath: logPath, Started: time.Now(), cmd: cmd, log: log, done: make(chan struct{})}
	var reading sync.WaitGroup
	if pipe != nil {
		reading.Go(func() {
			stdout(pipe, log)
			_, _ = io.Copy(log, pipe) // whatever the reader left
		})
	}
	go func() {
		reading.Wait() // Wait must not close the pipe while it is read
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// ErrExited is wrapped by errors about a process that ended early.
var ErrExited = errors.New("process exited")

// CheckRunning returns an error naming the process and its log when it
// has ended.
func (p *Process) CheckRunning() error {
	if done, err := p.Exited(); done {
		return fmt.Errorf("%s: %w (%v); see %s:\n%s", p.Name, ErrExited, err, p.LogPath, p.Tail(15))
	}
	return nil
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	if done, _ := p.Exited(); done {
		return fmt.Errorf("%s: %w", p.Name, ErrExited)
	}
	return p.cmd.Process.Signal(sig)
}

// Stop ends the process: SIGTERM (after SIGCONT, in case it is stopped),
// then SIGKILL after grace. It returns when the process is gone.
func (p *Process) Stop(grace time.Duration) {
	if done, _ := p.Exited(); done {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Wait waits up to timeout for the process to end by itself.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %s", p.Name, timeout)
	}
}

// Errors returns the first n error-level lines of the process's JSON
// log: the cause of a failure is often long before its last lines, which
// a shutdown fills with warnings.
func (p *Process) Errors(n int) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for found := 0; found < n && sc.Scan(); {
		if line := sc.Text(); isErrorLine(line) {
			b.WriteString(line + "\n")
			found++
		}
	}
	return b.String()
}

func isErrorLine(line string) bool {
	for _, l := range []string{`"level":"error"`, `"level":"fatal"`, `"level":"panic"`, `"level":"dpanic"`} {
		if strings.Contains(line, l) {
			return true
		}
	}
	return strings.HasPrefix(line, "panic:")
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return err.Error() + "\n"
	}
	defer f.Close()
	// The end of a big log is what matters: read at most the last 64 KiB.
	if info, err := f.Stat(); err == nil && info.Size() > 64<<10 {
		_, _ = f.Seek(-64<<10, io.SeekEnd)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	if len(lines) == 0 {
		return "(empty)\n"
	}
	return strings.Join(lines, "\n") + "\n"
}
