package store

// The column lists both drivers select, one per table, in the order each
// driver's scan function reads them. The schema is the same in both (a
// migration version means one schema), so the lists are too.

// AgentColumns lists the columns of the agents table.
const AgentColumns = `id, hostname, labels, pinned_labels, version, state, state_reason,
	state_changed_at, registered_at, connected_at, last_seen_at, peer_address,
	cert_serial, cert_not_after, join_token_id, hello, last_heartbeat,
	deregistered_at, deregister_reason, public_key_sha256`

// AgentViewColumns are the agents columns a driver selects after
// AgentColumns (which its inserts write): the replica holding the stream
// and the status sequence, both set by the store.
const AgentViewColumns = `stream_holder, status_seq`

// JoinTokenColumns lists the columns of the join_tokens table.
const JoinTokenColumns = `id, hash, description, labels, max_uses, uses, created_at, expires_at, revoked_at`

// APITokenColumns lists the columns of the api_tokens table.
const APITokenColumns = `id, name, hash, role, created_at, expires_at, revoked_at, created_by`

// FleetCommandColumns lists the columns of the fleet_commands table.
const FleetCommandColumns = `id, kind, request, created_by, state, created_at, finished_at, summary`

// HostCommandColumns lists the columns of the host_commands table.
const HostCommandColumns = `id, fleet_command_id, agent_id, kind, spec, state, message, result,
	created_at, released_at, deadline, sent_at, started_at, finished_at, cancel_reason, change_seq`

// CommandEventColumns lists the columns of the command_events table.
const CommandEventColumns = `seq, fleet_command_id, agent_id, event, created_at`

// CommandReportColumns lists the columns of the command_reports table.
const CommandReportColumns = `seq, command_id, agent_id, event, received_at`

// ServiceColumns lists the columns of the services table.
const ServiceColumns = `name, spec, created_at, updated_at`

// RolloutColumns lists the columns of the rollouts table.
const RolloutColumns = `id, service, image, rollback_of, created_by, definition, service_spec, load_balancers,
	state, message, current_batch, prepared, batch_started_at, batch_finished_at, stop, stop_rollback, stop_state,
	created_at, finished_at, bake_until, analysis, window_resume_at`

// RolloutHostColumns lists the columns of the rollout_hosts table.
const RolloutHostColumns = `rollout_id, agent_id, batch, step, rolling_back, previous_image, message,
	started_at, finished_at, step_started_at, observed_image, server, changed, waiting_offline, failure, healthy_since`

// RolloutControlColumns lists the columns of the rollout_controls table.
const RolloutControlColumns = `seq, rollout_id, op, reason, rollback, requested_at, answered_at, code, answer`

// AuditColumns lists the columns of the audit_events table.
const AuditColumns = `id, at, principal, role, method, request, peer, code, message, duration_ns, request_id`

// BackupPolicyColumns are the backup_policies columns in scan order.
const BackupPolicyColumns = `name, spec, created_by, created_at, updated_at`

// BackupPolicyRunColumns are the backup_policy_runs columns in scan order.
const BackupPolicyRunColumns = `policy, job, last_slot, command_id, started_at, last_command_id, last_finished_at,
	last_succeeded, last_message, last_success_at`

// BackupColumns are the backups columns in scan order.
const BackupColumns = `seq, id, agent_id, database_name, policy, command_id, started_at, finished_at, size_bytes,
	sha256, uri, verified, drill_at, drill_succeeded, drill_message, drill_command_id, drill_restore_ns,
	drill_rpo_ns, pruned_at, name, backup_type`

// RemediationColumns are the remediations columns in scan order.
const RemediationColumns = `id, service, agent_id, action, reason, evidence, rollout_id, occurred_at`
