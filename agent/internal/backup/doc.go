// Package backup backs up the PostgreSQL databases named in the agent's
// configuration: it runs pg_dump (an argument vector, never a shell),
// streams the custom-format archive through a SHA-256 into the backup
// directory, verifies it with pg_restore, and only then gives it its final
// name and writes its manifest. It also reads each database's connection
// count for the heartbeat.
package backup
