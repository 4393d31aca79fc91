package nginx

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
)

// hostLabelPattern is one label of a DNS name. Underscores are allowed
// because Docker and Compose service names use them and resolve through
// /etc/hosts or Docker's DNS.
var hostLabelPattern = regexp.MustCompile(`^[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?$`)

// maxHostLength is the longest DNS name.
const maxHostLength = 253

// validateServer checks that addr is host:port with an IP address or a DNS
// name and a port from 1 to 65535. The grammar leaves out every character
// that could change the meaning of an nginx directive (blanks, ';', '{',
// '}', '#', quotes, '$', backslashes) or of a shell command line.
func validateServer(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if err := validatePort(port); err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if !isDNSName(host) {
		return fmt.Errorf("%q: host %q is neither an IP address nor a DNS name", addr, host)
	}
	return nil
}

func validatePort(port string) error {
	for _, c := range port {
		if c < '0' || c > '9' {
			return fmt.Errorf("port %q is not a number", port)
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not from 1 to 65535", port)
	}
	return nil
}

func isDNSName(host string) bool {
	if host == "" || len(host) > maxHostLength {
		return false
	}
	start := 0
	for i := 0; i <= len(host); i++ {
		if i < len(host) && host[i] != '.' {
			continue
		}
		if !hostLabelPattern.MatchString(host[start:i]) {
			return false
		}
		start = i + 1
	}
	return true
}
