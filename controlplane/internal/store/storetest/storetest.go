package storetest

import (
	"testing"

	"flotilla.dev/controlplane/internal/store"
)

// Opener returns a fresh, empty store that is closed when t ends.
type Opener func(t *testing.T) store.Store

// BenchOpener returns a fresh, empty store that is closed when b ends.
type BenchOpener func(b *testing.B) store.Store

// Run runs every conformance test, each as a subtest on stores from open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		run  func(*testing.T, Opener)
	}{
		{"AgentRoundTrip", testAgentRoundTrip},
		{"RegisterAgentOutOfRangeTime", testRegisterAgentOutOfRangeTime},
		{"GetAgentNotFound", testGetAgentNotFound},
		{"ListAgents", testListAgents},
		{"RegisterAgent", testRegisterAgent},
		{"RegisterAgentBuildErrorWritesNothing", testRegisterAgentBuildErrorWritesNothing},
		{"RegisterAgentDuplicateID", testRegisterAgentDuplicateID},
		{"RegisterAgentLastUseRace", testRegisterAgentLastUseRace},
		{"UpdateAgentStatuses", testUpdateAgentStatuses},
		{"UpdateAgentStatusesIsOneTransaction", testUpdateAgentStatusesIsOneTransaction},
		{"UpdateAgentStatusesEmpty", testUpdateAgentStatusesEmpty},
		{"RegisteredWithKey", testRegisteredWithKey},
		{"FleetCommandRoundTrip", testFleetCommandRoundTrip},
		{"CommandsNotFound", testCommandsNotFound},
		{"CreateFleetCommandConflictWritesNothing", testCreateFleetCommandConflictWritesNothing},
		{"CreateHostCommands", testCreateHostCommands},
		{"UpdateHostCommands", testUpdateHostCommands},
		{"ListActiveHostCommands", testListActiveHostCommands},
		{"ListFleetCommands", testListFleetCommands},
		{"UpdateFleetCommand", testUpdateFleetCommand},
		{"UpdateFleetCommandFenced", testUpdateFleetCommandFenced},
		{"UpdateHostCommandsFenced", testUpdateHostCommandsFenced},
		{"CommandEvents", testCommandEvents},
		{"HostCommandChanges", testHostCommandChanges},
		{"HostCommandChangesConcurrentWriters", testHostCommandChangesConcurrentWriters},
		{"ListAgentActiveHostCommands", testListAgentActiveHostCommands},
		{"CommandReports", testCommandReports},
		{"RevokeJoinToken", testRevokeJoinToken},
		{"APITokenListGetRevoke", testAPITokenListGetRevoke},
		{"DeregisterAgentAndCertificate", testDeregisterAgentAndCertificate},
		{"AuditEvents", testAuditEvents},
		{"Services", testServices},
		{"RolloutLifecycle", testRolloutLifecycle},
		{"RolloutWithoutLoadBalancers", testRolloutWithoutLoadBalancers},
		{"ListRollouts", testListRollouts},
		{"JoinTokenRoundTrip", testJoinTokenRoundTrip},
		{"CreateJoinTokenConflict", testCreateJoinTokenConflict},
		{"GetJoinTokenNotFound", testGetJoinTokenNotFound},
		{"APITokenRoundTrip", testAPITokenRoundTrip},
		{"CreateAPITokenConflict", testCreateAPITokenConflict},
		{"GetAPITokenByHashNotFound", testGetAPITokenByHashNotFound},
		{"CountAPITokens", testCountAPITokens},
		{"LeaseAcquireRenewRelease", testLeaseAcquireRenewRelease},
		{"LeaseExpiresAndMoves", testLeaseExpiresAndMoves},
		{"LeaseRace", testLeaseRace},
		{"UpdateRolloutFence", testUpdateRolloutFence},
		{"RolloutControls", testRolloutControls},
		{"AgentStatusSeq", testAgentStatusSeq},
		{"UpdateAgentStatusesIfHolder", testUpdateAgentStatusesIfHolder},
		{"MarkAgentsLost", testMarkAgentsLost},
		{"AttachReportsBackFromLost", testAttachReportsBackFromLost},
		{"LiveLeases", testLiveLeases},
		{"BackupPolicies", testBackupPolicies},
		{"BackupPolicyRuns", testBackupPolicyRuns},
		{"BackupCatalog", testBackupCatalog},
		{"BackupDrillsAndLatest", testBackupDrillsAndLatest},
		{"Subscriptions", testSubscriptions},
		{"PublishNotification", testPublishNotification},
		{"ClaimDeliveries", testClaimDeliveries},
		{"ClaimDeliveriesRace", testClaimDeliveriesRace},
		{"ReleaseDeliveries", testReleaseDeliveries},
		{"DeliveryLog", testDeliveryLog},
		{"PruneNotifications", testPruneNotifications},
		{"Remediations", testRemediations},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, open) })
	}
}

// Benchmark runs every store benchmark, each as a sub-benchmark on stores
// from open.
func Benchmark(b *testing.B, open BenchOpener) {
	b.Run("RegisterAgents1000", func(b *testing.B) { benchRegisterAgents1000(b, open) })
	b.Run("UpdateAgentStatuses1000", func(b *testing.B) { benchUpdateAgentStatuses(b, open) })
	b.Run("CreateFleetCommand10000Hosts", func(b *testing.B) { benchCreateFleetCommand10000Hosts(b, open) })
	b.Run("UpdateHostCommands", func(b *testing.B) { benchUpdateHostCommands(b, open) })
	b.Run("GetAPITokenByHash", func(b *testing.B) { benchGetAPITokenByHash(b, open) })
}
