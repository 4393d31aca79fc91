package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// VerifyArchive checks that path is a complete, readable pg_dump archive
// in custom format, with pgRestore (a pg_restore binary). It returns the
// number of entries in the archive's table of contents and the version of
// the server the dump came from.
//
// It runs pg_restore twice, never connecting to a server: "--list" reads
// the table of contents, and a restore into /dev/null reads and
// decompresses every data block. The second pass is what catches a
// truncated archive: the table of contents sits at the start of the file,
// so a listing alone succeeds on an archive cut in half.
func VerifyArchive(ctx context.Context, pgRestore, path string) (entries int, serverVersion string, err error) {
	list, err := runRestore(ctx, pgRestore, "--list", path)
	if err != nil {
		return 0, "", fmt.Errorf("verify %s: list the table of contents: %w", path, err)
	}
	entries, serverVersion = parseTOC(list)
	// A database without tables (a new application before its
	// migrations) lists no entries: that is a valid, restorable archive.
	// What must be there is the header pg_restore prints for a readable
	// archive.
	if serverVersion == "" {
		return 0, "", fmt.Errorf("verify %s: pg_restore --list printed no archive header (not a pg_dump archive?)", path)
	}
	if _, err := runRestore(ctx, pgRestore, "--file="+os.DevNull, path); err != nil {
		return 0, "", fmt.Errorf("verify %s: read the archive's data (truncated or corrupt?): %w", path, err)
	}
	return entries, serverVersion, nil
}

// runRestore runs pg_restore with args and returns its standard output.
// A failure quotes the last lines of its standard error.
func runRestore(ctx context.Context, pgRestore string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, pgRestore, args...)
	cmd.Env = childEnv()
	terminateOnCancel(cmd)
	var stdout strings.Builder
	stderr := &tailWriter{max: stderrTailBytes}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return "", fmt.Errorf("pg_restore stopped: %w", ctxErr)
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("pg_restore exited with status %d: %s", exit.ExitCode(), stderr.lastLines(stderrLines))
		}
		return "", fmt.Errorf("run %s: %w", pgRestore, err)
	}
	return stdout.String(), nil
}

// serverVersionPrefix introduces the server version in the header of
// "pg_restore --list" (not translated, whatever the locale).
const serverVersionPrefix = "Dumped from database version:"

// parseTOC reads the output of "pg_restore --list": comment lines start
// with ';' (the header among them), every other non-empty line is one
// table-of-contents entry.
func parseTOC(list string) (entries int, serverVersion string) {
	sc := bufio.NewScanner(strings.NewReader(list))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, ";"):
			comment := strings.TrimSpace(strings.TrimPrefix(line, ";"))
			if v, ok := strings.CutPrefix(comment, serverVersionPrefix); ok {
				serverVersion = strings.TrimSpace(v)
			}
		default:
			entries++
		}
	}
	return entries, serverVersion
}
