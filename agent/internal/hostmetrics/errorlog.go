package hostmetrics

import (
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
)

// errorLog logs metric read failures without flooding the log: a heartbeat
// every 5 s with a disk that is gone would otherwise write 17,000 identical
// warnings a day. Each metric's failure is logged at warn level when it starts
// and then at most once per interval; the other failures go to debug, and the
// recovery is logged once at info level.
type errorLog struct {
	log      *zap.Logger
	clock    clockwork.Clock
	interval time.Duration

	mu       sync.Mutex
	lastWarn map[string]time.Time // metric → when its failure was last warned about
}

func newErrorLog(log *zap.Logger, clock clockwork.Clock, interval time.Duration) *errorLog {
	return &errorLog{log: log, clock: clock, interval: interval, lastWarn: map[string]time.Time{}}
}

// observe records the outcome of reading metric and reports whether it failed.
func (l *errorLog) observe(metric string, err error) (failed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	last, failing := l.lastWarn[metric]
	if err == nil {
		if failing {
			delete(l.lastWarn, metric)
			l.log.Info("host metric readable again", zap.String("metric", metric))
		}
		return false
	}
	now := l.clock.Now()
	if failing && now.Sub(last) < l.interval {
		l.log.Debug("cannot read host metric", zap.String("metric", metric), zap.Error(err))
		return true
	}
	l.lastWarn[metric] = now
	l.log.Warn("cannot read host metric", zap.String("metric", metric), zap.Error(err),
		zap.Duration("repeats_logged_every", l.interval))
	return true
}
