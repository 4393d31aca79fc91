package backups

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
)

// Manager keeps the policies and reads the catalog for the API.
type Manager struct {
	store store.BackupStore
	now   func() time.Time
}

// NewManager returns a Manager on st; now is time.Now when nil.
func NewManager(st store.BackupStore, now func() time.Time) *Manager {
	if now == nil {
		now = time.Now
	}
	return &Manager{store: st, now: now}
}

// Create stores a new policy on behalf of createdBy.
func (m *Manager) Create(ctx context.Context, p *flotillav1.BackupPolicy, createdBy string) (*flotillav1.BackupPolicy, error) {
	def, err := Normalize(p)
	if err != nil {
		return nil, err
	}
	spec, err := proto.Marshal(def)
	if err != nil {
		return nil, errors.New("could not encode the policy")
	}
	now := m.now()
	sp := store.BackupPolicy{Name: def.GetName(), Spec: spec, CreatedBy: createdBy, CreatedAt: now, UpdatedAt: now}
	if err := m.store.CreateBackupPolicy(ctx, sp); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, &existsError{name: def.GetName()}
		}
		return nil, fault.Store("storing the policy", err)
	}
	return m.render(ctx, sp)
}

// Update replaces a policy's definition.
func (m *Manager) Update(ctx context.Context, p *flotillav1.BackupPolicy) (*flotillav1.BackupPolicy, error) {
	def, err := Normalize(p)
	if err != nil {
		return nil, err
	}
	spec, err := proto.Marshal(def)
	if err != nil {
		return nil, errors.New("could not encode the policy")
	}
	sp, err := m.store.UpdateBackupPolicy(ctx, store.BackupPolicy{Name: def.GetName(), Spec: spec, UpdatedAt: m.now()})
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("policy.name", def.GetName())
	}
	if err != nil {
		return nil, fault.Store("storing the policy", err)
	}
	return m.render(ctx, sp)
}

// Get returns a policy with its schedules' state.
func (m *Manager) Get(ctx context.Context, name string) (*flotillav1.BackupPolicy, error) {
	sp, err := m.store.GetBackupPolicy(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("name", name)
	}
	if err != nil {
		return nil, fault.Store("reading policy "+name, err)
	}
	return m.render(ctx, sp)
}

// List returns every policy by name.
func (m *Manager) List(ctx context.Context) ([]*flotillav1.BackupPolicy, error) {
	sps, err := m.store.ListBackupPolicies(ctx)
	if err != nil {
		return nil, fault.Store("listing policies", err)
	}
	runs, err := m.store.ListBackupPolicyRuns(ctx, "")
	if err != nil {
		return nil, fault.Store("listing policy runs", err)
	}
	out := make([]*flotillav1.BackupPolicy, 0, len(sps))
	for _, sp := range sps {
		p, err := Decode(sp)
		if err != nil {
			return nil, err
		}
		var mine []store.BackupPolicyRun
		for _, r := range runs {
			if r.Policy == sp.Name {
				mine = append(mine, r)
			}
		}
		out = append(out, p.Render(mine, m.now()))
	}
	return out, nil
}

// Delete removes a policy; one with a run in progress is refused.
func (m *Manager) Delete(ctx context.Context, name string) error {
	runs, err := m.store.ListBackupPolicyRuns(ctx, name)
	if err != nil {
		return fault.Store("reading policy runs", err)
	}
	for _, r := range runs {
		if r.CommandID != "" {
			return fault.Preconditionf("backup policy %s has a %s run in progress (command %s); wait for it or cancel it with CancelCommand, then delete",
				name, r.Job, r.CommandID)
		}
	}
	err = m.store.DeleteBackupPolicy(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("name", name)
	}
	if err != nil {
		return fault.Store("deleting policy "+name, err)
	}
	return nil
}

func (m *Manager) render(ctx context.Context, sp store.BackupPolicy) (*flotillav1.BackupPolicy, error) {
	p, err := Decode(sp)
	if err != nil {
		return nil, err
	}
	runs, err := m.store.ListBackupPolicyRuns(ctx, sp.Name)
	if err != nil {
		return nil, fault.Store("reading policy runs", err)
	}
	return p.Render(runs, m.now()), nil
}

// ListBackups returns a page of the catalog and the Seq of each entry
// (the page's cursor).
func (m *Manager) ListBackups(ctx context.Context, q store.BackupQuery) ([]*flotillav1.Backup, []int64, error) {
	list, err := m.store.ListBackups(ctx, q)
	if err != nil {
		return nil, nil, fault.Store("listing backups", err)
	}
	out, seqs := make([]*flotillav1.Backup, len(list)), make([]int64, len(list))
	for i, b := range list {
		out[i], seqs[i] = BackupToProto(b), b.Seq
	}
	return out, seqs, nil
}

// GetBackup returns a catalogued backup.
func (m *Manager) GetBackup(ctx context.Context, id string) (*flotillav1.Backup, error) {
	b, err := m.store.GetBackup(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &fault.NotFoundError{Field: "id", Kind: "backup", ID: id, Hint: "ListBackups shows the catalog"}
	}
	if err != nil {
		return nil, fault.Store("reading backup "+id, err)
	}
	return BackupToProto(b), nil
}

// existsError answers the creation of a policy whose name is taken; it
// wraps store.ErrConflict (AlreadyExists).
type existsError struct{ name string }

func (e *existsError) Error() string {
	return fmt.Sprintf("policy.name: backup policy %q already exists; UpdateBackupPolicy changes it", e.name)
}

func (e *existsError) Unwrap() error { return store.ErrConflict }

func notFound(field, name string) error {
	return &fault.NotFoundError{Field: field, Kind: "backup policy", ID: name, Hint: "ListBackupPolicies shows them"}
}

// BackupToProto renders a catalog entry.
func BackupToProto(b store.Backup) *flotillav1.Backup {
	out := &flotillav1.Backup{
		Id: b.ID, AgentId: b.AgentID, Database: b.Database, Policy: b.Policy, CommandId: b.CommandID,
		StartedAt: ts(b.StartedAt), FinishedAt: ts(b.FinishedAt), SizeBytes: uint64(max(b.SizeBytes, 0)),
		Sha256: b.SHA256, Uri: b.URI, Verified: b.Verified, PrunedAt: ts(b.PrunedAt),
		Name: b.Name, Type: flotillav1.BackupType(b.Type),
	}
	if !b.DrillAt.IsZero() {
		out.LastDrill = &flotillav1.BackupDrill{
			At: ts(b.DrillAt), Succeeded: b.DrillSucceeded, Message: b.DrillMessage, CommandId: b.DrillCommandID,
			RestoreDuration: durationpb.New(b.DrillRestore), RecoveryPoint: durationpb.New(b.DrillRPO),
		}
	}
	return out
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// RetentionPreview is a dry run of a policy's prune over its catalogued
// backups, with retention r (the policy's when nil): host by host, dumps
// and base backups apart, days read in the policy's time zone.
func (m *Manager) RetentionPreview(ctx context.Context, name string, r *flotillav1.BackupRetention) (*flotillav1.GetRetentionPreviewResponse, error) {
	sp, err := m.store.GetBackupPolicy(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("name", name)
	}
	if err != nil {
		return nil, fault.Store("reading policy "+name, err)
	}
	p, err := Decode(sp)
	if err != nil {
		return nil, err
	}
	if r == nil || r.GetKeepLast()|r.GetKeepDaily()|r.GetKeepWeekly()|r.GetKeepMonthly() == 0 {
		r = p.Def.GetRetention()
	} else if err := checkRetention(r); err != nil {
		return nil, err
	}
	list, err := m.store.ListBackups(ctx, store.BackupQuery{Policy: name})
	if err != nil {
		return nil, fault.Store("listing the policy's backups", err)
	}
	groups := map[[2]string][]store.Backup{}
	var order [][2]string
	for _, b := range list {
		k := [2]string{b.AgentID, fmt.Sprint(b.Type)}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], b)
	}
	out := &flotillav1.GetRetentionPreviewResponse{RecoveryPoints: RecoveryPoints(r, p.Backup, p.Def.GetType())}
	for _, k := range order {
		sel := Select(groups[k], r, p.Backup.Location())
		out.Lost = append(out.Lost, Lost(sel, flotillav1.BackupType(groups[k][0].Type))...)
		for _, kept := range sel.Keep {
			out.Kept = append(out.Kept, &flotillav1.RetainedBackup{Backup: BackupToProto(kept.Backup), KeptBy: kept.Reasons})
		}
		for _, b := range sel.Prune {
			out.Pruned = append(out.Pruned, BackupToProto(b))
		}
	}
	return out, nil
}
