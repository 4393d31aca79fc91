// Package backups runs backup policies: it validates them, schedules their
// jobs (backups, restore drills, prunes) as ordinary fleet commands, records
// every backup the agents report in the catalog, exports the backup gauges
// from the catalog at start, and states a policy's retention as the recovery
// points it keeps.
//
// The scheduler is a loop on an injected clock. Each job of a policy has a
// run row in the store with the last slot it ran and the fleet command in
// progress: a job starts only while no run is in progress (the store's
// compare-and-set), so two runs never overlap, and a job whose slots were
// missed while the control plane was down runs once, for the latest missed
// slot. The fleet command's ID is derived from the policy, the job and the
// slot and written to the run row before the command is created, so a
// control plane that dies between the two creates the same command when it
// comes back, never a second one.
package backups
