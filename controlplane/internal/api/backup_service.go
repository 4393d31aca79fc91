package api

import (
	"context"
	"errors"
	"strconv"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/validate"

	"flotilla.dev/controlplane/internal/backups"
	"flotilla.dev/controlplane/internal/store"
)

const (
	defaultBackupPage = 20
	maxBackupPage     = 200
)

// BackupServiceConfig configures the backup service.
type BackupServiceConfig struct {
	// Policies keeps the policies and reads the catalog (required).
	Policies *backups.Manager
}

// BackupService implements flotilla.v1.BackupService: request fields are
// checked here, policies by package backups.
type BackupService struct {
	flotillav1.UnimplementedBackupServiceServer
	policies *backups.Manager
}

// NewBackupService validates cfg and returns the service.
func NewBackupService(cfg BackupServiceConfig) (*BackupService, error) {
	if cfg.Policies == nil {
		return nil, errors.New("api: backup service needs the policy manager")
	}
	return &BackupService{policies: cfg.Policies}, nil
}

// CreateBackupPolicy implements BackupService.CreateBackupPolicy.
func (s *BackupService) CreateBackupPolicy(ctx context.Context, req *flotillav1.CreateBackupPolicyRequest) (*flotillav1.CreateBackupPolicyResponse, error) {
	p, err := s.policies.Create(ctx, req.GetPolicy(), principalOf(ctx))
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.CreateBackupPolicyResponse{Policy: p}, nil
}

// UpdateBackupPolicy implements BackupService.UpdateBackupPolicy.
func (s *BackupService) UpdateBackupPolicy(ctx context.Context, req *flotillav1.UpdateBackupPolicyRequest) (*flotillav1.UpdateBackupPolicyResponse, error) {
	p, err := s.policies.Update(ctx, req.GetPolicy())
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.UpdateBackupPolicyResponse{Policy: p}, nil
}

// GetBackupPolicy implements BackupService.GetBackupPolicy.
func (s *BackupService) GetBackupPolicy(ctx context.Context, req *flotillav1.GetBackupPolicyRequest) (*flotillav1.GetBackupPolicyResponse, error) {
	if err := backups.ValidatePolicyName("name", req.GetName()); err != nil {
		return nil, GRPCError(err)
	}
	p, err := s.policies.Get(ctx, req.GetName())
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.GetBackupPolicyResponse{Policy: p}, nil
}

// ListBackupPolicies implements BackupService.ListBackupPolicies.
func (s *BackupService) ListBackupPolicies(ctx context.Context, _ *flotillav1.ListBackupPoliciesRequest) (*flotillav1.ListBackupPoliciesResponse, error) {
	list, err := s.policies.List(ctx)
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.ListBackupPoliciesResponse{Policies: list}, nil
}

// DeleteBackupPolicy implements BackupService.DeleteBackupPolicy.
func (s *BackupService) DeleteBackupPolicy(ctx context.Context, req *flotillav1.DeleteBackupPolicyRequest) (*flotillav1.DeleteBackupPolicyResponse, error) {
	if err := backups.ValidatePolicyName("name", req.GetName()); err != nil {
		return nil, GRPCError(err)
	}
	if err := s.policies.Delete(ctx, req.GetName()); err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.DeleteBackupPolicyResponse{}, nil
}

// ListBackups implements BackupService.ListBackups.
func (s *BackupService) ListBackups(ctx context.Context, req *flotillav1.ListBackupsRequest) (*flotillav1.ListBackupsResponse, error) {
	q, err := backupQuery(req)
	if err != nil {
		return nil, err
	}
	limit := q.Limit
	q.Limit++
	list, seqs, err := s.policies.ListBackups(ctx, q)
	if err != nil {
		return nil, GRPCError(err)
	}
	resp := &flotillav1.ListBackupsResponse{}
	if len(list) > limit {
		list = list[:limit]
		resp.NextPageToken = encodePageToken(listingBackups, backupsFilter(req), strconv.FormatInt(seqs[limit-1], 10))
	}
	resp.Backups = list
	return resp, nil
}

// backupQuery checks a ListBackups request and returns its store query.
func backupQuery(req *flotillav1.ListBackupsRequest) (store.BackupQuery, error) {
	q := store.BackupQuery{AgentID: req.GetAgentId(), Database: req.GetDatabase(), Policy: req.GetPolicy(), Limit: defaultBackupPage}
	if err := validateShort("agent_id", q.AgentID, maxShortString); err != nil {
		return q, err
	}
	if q.Database != "" {
		if err := validate.DatabaseName(q.Database); err != nil {
			return q, invalid("database", "%v", err)
		}
	}
	if q.Policy != "" {
		if err := backups.ValidatePolicyName("policy", q.Policy); err != nil {
			return q, GRPCError(err)
		}
	}
	switch v := req.GetVerified(); v {
	case flotillav1.VerifiedFilter_VERIFIED_FILTER_UNSPECIFIED:
	case flotillav1.VerifiedFilter_VERIFIED_FILTER_VERIFIED, flotillav1.VerifiedFilter_VERIFIED_FILTER_UNVERIFIED:
		yes := v == flotillav1.VerifiedFilter_VERIFIED_FILTER_VERIFIED
		q.Verified = &yes
	default:
		return q, invalid("verified", "%d is not a verified filter", v)
	}
	switch n := req.GetPageSize(); {
	case n < 0:
		return q, invalid("page_size", "must not be negative")
	case n > maxBackupPage:
		return q, invalid("page_size", "%d is more than the maximum of %d", n, maxBackupPage)
	case n > 0:
		q.Limit = int(n)
	}
	if tok := req.GetPageToken(); tok != "" {
		cursor, err := decodePageToken(listingBackups, backupsFilter(req), tok)
		if err != nil {
			return q, err
		}
		if q.BeforeSeq, err = strconv.ParseInt(cursor, 10, 64); err != nil || q.BeforeSeq <= 0 {
			return q, invalid("page_token", "not a token from a previous %s response; leave it empty for the first page", listingBackups)
		}
	}
	return q, nil
}

// backupsFilter is the filter a ListBackups page token is bound to.
func backupsFilter(req *flotillav1.ListBackupsRequest) string {
	return pageFilter(req.GetAgentId(), req.GetDatabase(), req.GetPolicy(), strconv.Itoa(int(req.GetVerified())))
}

// GetBackup implements BackupService.GetBackup.
func (s *BackupService) GetBackup(ctx context.Context, req *flotillav1.GetBackupRequest) (*flotillav1.GetBackupResponse, error) {
	if err := validateShort("id", req.GetId(), maxShortString); err != nil {
		return nil, err
	}
	if req.GetId() == "" {
		return nil, invalid("id", "required")
	}
	b, err := s.policies.GetBackup(ctx, req.GetId())
	if err != nil {
		return nil, GRPCError(err)
	}
	return &flotillav1.GetBackupResponse{Backup: b}, nil
}

// GetRetentionPreview implements BackupService.GetRetentionPreview.
func (s *BackupService) GetRetentionPreview(ctx context.Context, req *flotillav1.GetRetentionPreviewRequest) (*flotillav1.GetRetentionPreviewResponse, error) {
	if err := backups.ValidatePolicyName("name", req.GetName()); err != nil {
		return nil, GRPCError(err)
	}
	resp, err := s.policies.RetentionPreview(ctx, req.GetName(), req.GetRetention())
	if err != nil {
		return nil, GRPCError(err)
	}
	return resp, nil
}
