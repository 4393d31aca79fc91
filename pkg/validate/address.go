package validate

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
)

// hostLabel is one label of a DNS name. Underscores are allowed because
// Docker and Compose service names use them and resolve through /etc/hosts
// or Docker's DNS.
var hostLabel = regexp.MustCompile(`^[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?$`)

// maxHostLength is the longest DNS name.
const maxHostLength = 253

// ServerAddress checks host:port with an IP address or a DNS name and a
// port from 1 to 65535, as an Nginx upstream's server names it. The
// grammar leaves out every character that could change the meaning of an
// nginx directive (blanks, ';', '{', '}', '#', quotes, '$', backslashes)
// or of a shell command line.
func ServerAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s is not host:port", quote(addr))
	}
	if err := Port(port); err != nil {
		return fmt.Errorf("%s: %w", quote(addr), err)
	}
	if net.ParseIP(host) == nil && !isDNSName(host) {
		return fmt.Errorf("%s: host %s is neither an IP address nor a DNS name", quote(addr), quote(host))
	}
	return nil
}

// Port checks a port number written in decimal digits, from 1 to 65535.
func Port(port string) error {
	for _, c := range port {
		if c < '0' || c > '9' {
			return fmt.Errorf("port %s is not a number", quote(port))
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %s is not from 1 to 65535", quote(port))
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
		if !hostLabel.MatchString(host[start:i]) {
			return false
		}
		start = i + 1
	}
	return true
}
