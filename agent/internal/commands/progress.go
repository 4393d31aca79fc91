package commands

import (
	"sync"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"google.golang.org/protobuf/proto"
)

// progressForwarder turns an executor's progress reports into RUNNING
// events, at most one per ProgressInterval: reports in between are
// coalesced and the latest wins. Reporting never blocks the executor on the
// journal or the stream.
type progressForwarder struct {
	mu     sync.Mutex
	latest *flotillav1.CommandProgress

	wake chan struct{} // a report is waiting; capacity 1
	quit chan struct{}
	done chan struct{}
}

// startProgress starts the forwarder of an execution.
func (r *Runner) startProgress(x *execution) *progressForwarder {
	p := &progressForwarder{
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go func() {
		defer close(p.done)
		r.forwardProgress(x, p)
	}()
	return p
}

// report is the executor.Progress of the execution.
func (p *progressForwarder) report(pr *flotillav1.CommandProgress) {
	if pr == nil {
		return
	}
	pr = proto.Clone(pr).(*flotillav1.CommandProgress) // the executor may reuse it
	p.mu.Lock()
	p.latest = pr
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default: // already signalled
	}
}

// stop stops the forwarder and waits for it: progress not yet forwarded is
// dropped, the final event supersedes it.
func (p *progressForwarder) stop() {
	close(p.quit)
	<-p.done
}

func (p *progressForwarder) take() *flotillav1.CommandProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.latest
	p.latest = nil
	return pr
}

func (r *Runner) forwardProgress(x *execution, p *progressForwarder) {
	for {
		select {
		case <-p.quit:
			return
		case <-p.wake:
		}
		if pr := p.take(); pr != nil {
			ev := r.event(x.cmd.GetId(), running, pr.GetMessage())
			ev.Progress = pr
			r.emit(x, ev)
		}
		pause := r.cfg.Clock.NewTimer(r.cfg.ProgressInterval)
		select {
		case <-p.quit:
			pause.Stop()
			return
		case <-pause.Chan():
		}
	}
}
