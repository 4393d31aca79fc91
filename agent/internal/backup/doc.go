// Package backup runs the backup command kinds for the PostgreSQL databases
// named in the agent's configuration (docs/backups.md):
//
//   - backup: pg_dump (an argument vector, never a shell) in a snapshot
//     whose table row counts and checksums go into the manifest, streamed
//     through a SHA-256, verified with pg_restore, stored in a destination
//     (package objstore: the local backup directory or S3) and read back;
//     the manifest is written last, so only verified archives are ever
//     catalogued;
//   - base_backup: pg_basebackup, for point-in-time recovery;
//   - prune: retention (keep last, daily, weekly, monthly; never the
//     newest), with a dry run;
//   - restore: a dump into a new database, or a base backup plus archived
//     WAL up to a target time into a new data directory;
//   - drill: the newest dump restored into a scratch server made with
//     initdb, checked against its manifest, with measured RPO and RTO.
//
// WALPush and WALFetch are flotilla-agent's wal-push and wal-fetch
// (PostgreSQL's archive_command and restore_command). The package also
// reads each database's connection count and WAL archiver statistics for
// the heartbeat.
package backup
