package backups

import (
	"context"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/store"
)

// maxPending bounds the backups waiting to be catalogued while the store
// is away.
const maxPending = 10000

// Recorder catalogues every successful backup command, the ones run by
// hand (RunCommand) as well as the scheduled ones, as the dispatcher
// reports them. The store write happens on the Recorder's own goroutine:
// listeners must not block the dispatcher. A scheduled run's backups are
// also catalogued from its fleet command when the run ends (with their
// policy), so a control plane that stops before its Recorder wrote them
// loses none of those.
type Recorder struct {
	store store.BackupStore
	log   *zap.Logger

	pending chan store.Backup
}

// NewRecorder returns a Recorder; pass its Listen to Dispatcher.Listen and
// run Run.
func NewRecorder(st store.BackupStore, log *zap.Logger) *Recorder {
	if log == nil {
		log = zap.NewNop()
	}
	return &Recorder{store: st, log: log, pending: make(chan store.Backup, maxPending)}
}

// Listen takes a host command update; a successful backup is queued for
// the catalog.
func (r *Recorder) Listen(u commands.Update) {
	hc := u.Command
	if (hc.Kind != command.KindBackup && hc.Kind != command.KindBaseBackup) ||
		flotillav1.CommandState(hc.State) != flotillav1.CommandState_COMMAND_STATE_SUCCEEDED {
		return
	}
	res := &flotillav1.CommandResult{}
	if proto.Unmarshal(hc.Result, res) != nil || res.GetBackup() == nil {
		return
	}
	b := fromResult(hc.ID, hc.AgentID, hc.FleetCommandID, hc.FinishedAt, res.GetBackup())
	select {
	case r.pending <- b:
	default:
		r.log.Error("backup catalog queue full; this backup is catalogued only if a policy ran it",
			zap.String("backup", b.ID), zap.String("agent_id", b.AgentID))
	}
}

// Run writes queued backups to the catalog until ctx ends, retrying a
// write the store refused.
func (r *Recorder) Run(ctx context.Context) error {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	var failed []store.Backup
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-r.pending:
			failed = append(failed, b)
		case <-retry.C:
		}
		failed = r.write(ctx, failed)
		if len(failed) > 0 {
			retry.Reset(5 * time.Second)
		}
	}
}

// write catalogues bs and returns those the store refused.
func (r *Recorder) write(ctx context.Context, bs []store.Backup) []store.Backup {
	for i, b := range bs {
		if _, err := r.store.RecordBackup(ctx, b); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("cataloguing a backup failed; retrying", zap.String("backup", b.ID), zap.Error(err))
			}
			return bs[i:]
		}
	}
	return nil
}
