// Package commands delivers commands to agents and runs fleet commands.
//
// The Dispatcher owns host commands: it stores each one before sending it,
// sends it whenever its agent is connected (again after every reconnect —
// the agent's journal makes a resend harmless), applies the agent's events
// in order, and ends commands whose deadline passed. The Manager sits on
// top and runs RunCommand's fleet commands: it releases hosts within
// max_concurrency, stops starting new ones at max_errors, and keeps the
// watchers informed.
package commands

import (
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/distribution/reference"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
)

// Kind names of command specs, as logs, metrics and the store use them.
const (
	KindPull    = "pull"
	KindRestart = "restart"
	KindBackup  = "backup"
	KindDrain   = "drain"
	KindUndrain = "undrain"
)

// Kind returns the kind of a spec, or "" when none is set.
func Kind(spec *flotillav1.CommandSpec) string {
	switch spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Pull:
		return KindPull
	case *flotillav1.CommandSpec_Restart:
		return KindRestart
	case *flotillav1.CommandSpec_Backup:
		return KindBackup
	case *flotillav1.CommandSpec_Drain:
		return KindDrain
	case *flotillav1.CommandSpec_Undrain:
		return KindUndrain
	default:
		return ""
	}
}

// DefaultTimeout is the per-host time limit of a kind when the request sets none.
func DefaultTimeout(kind string) time.Duration {
	switch kind {
	case KindPull:
		return 10 * time.Minute
	case KindRestart:
		return 5 * time.Minute
	case KindBackup:
		return time.Hour
	default:
		return time.Minute
	}
}

// MaxTimeout bounds any per-host time limit.
const MaxTimeout = 24 * time.Hour

var (
	containerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)
	databaseName  = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,63}$`)
	upstreamName  = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`)
	hostName      = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$`)
)

func invalid(field, format string, args ...any) error {
	return fault.Invalid(field, format, args...)
}

// ValidateSpec checks a spec's parameters; field names in errors are
// prefixed with prefix (e.g. "spec"). The agent checks them again against
// its own guard rails: this is the early, friendly refusal.
func ValidateSpec(prefix string, spec *flotillav1.CommandSpec) error {
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Pull:
		return validateImage(prefix+".pull.image", k.Pull.GetImage(), true)
	case *flotillav1.CommandSpec_Restart:
		r := k.Restart
		if !containerName.MatchString(r.GetContainer()) {
			return invalid(prefix+".restart.container", "%q is not a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)", r.GetContainer())
		}
		if err := validateImage(prefix+".restart.image", r.GetImage(), false); err != nil {
			return err
		}
		if st := r.GetStopTimeout(); st != nil {
			if d := st.AsDuration(); st.CheckValid() != nil || d < 0 || d > 10*time.Minute {
				return invalid(prefix+".restart.stop_timeout", "must be between 0s and 10m")
			}
		}
		return nil
	case *flotillav1.CommandSpec_Backup:
		if !databaseName.MatchString(k.Backup.GetDatabase()) {
			return invalid(prefix+".backup.database", "%q is not a database name from the agent's backup.databases ([a-zA-Z0-9_-], at most 63)", k.Backup.GetDatabase())
		}
		return nil
	case *flotillav1.CommandSpec_Drain:
		return validateUpstream(prefix+".drain", k.Drain.GetUpstream(), k.Drain.GetServer())
	case *flotillav1.CommandSpec_Undrain:
		return validateUpstream(prefix+".undrain", k.Undrain.GetUpstream(), k.Undrain.GetServer())
	default:
		return invalid(prefix, "set exactly one of pull, restart, backup, drain, undrain")
	}
}

func validateImage(field, image string, required bool) error {
	if image == "" {
		if required {
			return invalid(field, "required")
		}
		return nil
	}
	if len(image) > 512 {
		return invalid(field, "longer than 512 characters")
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return invalid(field, "%q is not an image reference (name:tag or name@sha256:digest): %v", image, err)
	}
	if _, tagged := named.(reference.Tagged); !tagged {
		if _, digested := named.(reference.Digested); !digested {
			return invalid(field, "%q has neither a tag nor a digest; name the exact image to deploy", image)
		}
	}
	return nil
}

func validateUpstream(field, upstream, server string) error {
	if !upstreamName.MatchString(upstream) {
		return invalid(field+".upstream", "%q is not an upstream name from the agent's nginx.upstreams", upstream)
	}
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return invalid(field+".server", "%q is not host:port", server)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return invalid(field+".server", "port %q is not 1-65535", port)
	}
	if net.ParseIP(host) == nil && !hostName.MatchString(host) {
		return invalid(field+".server", "host %q is not an IP address or DNS name", host)
	}
	return nil
}
