package validate

import (
	"fmt"
	"regexp"
	"strings"
)

// The grammars of the names commands and services use. They are strict on
// purpose: the names end up in Docker API calls, file names, Nginx
// configuration and log lines.
var (
	containerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)
	databaseName  = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,63}$`)
	upstreamName  = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`)
)

// ContainerName checks Docker's container-name grammar, at most 128
// characters.
func ContainerName(name string) error {
	if !containerName.MatchString(name) {
		return fmt.Errorf("%s is not a container name (letters, digits, '_', '.', '-', starting with a letter or digit, at most 128)", quote(name))
	}
	return nil
}

// DatabaseName checks the name a backup command gives a database (a key
// of the agent's backup.databases).
func DatabaseName(name string) error {
	if !databaseName.MatchString(name) {
		return fmt.Errorf("%s is not a database name (letters, digits, '_', '-', 1 to 63)", quote(name))
	}
	return nil
}

// UpstreamName checks the name drain and undrain commands and services
// give an Nginx upstream (a key of the agent's nginx.upstreams).
func UpstreamName(name string) error {
	if !upstreamName.MatchString(name) {
		return fmt.Errorf("%s is not an upstream name (letters, digits, '_', '.', '-', 1 to 64)", quote(name))
	}
	return nil
}

// Text checks a free-text value such as a reason or a description: at most
// limit bytes, and no control characters but tabs.
func Text(s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%d bytes, at most %d allowed", len(s), limit)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' }) {
		return fmt.Errorf("control characters not allowed")
	}
	return nil
}
