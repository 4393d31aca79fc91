package commands

import (
	"fmt"
	"strings"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/validate"

	"flotilla.dev/controlplane/internal/fault"
)

// DefaultTimeout is the per-host time limit of a kind when the request sets none.
func DefaultTimeout(kind string) time.Duration {
	switch kind {
	case command.KindPull:
		return 10 * time.Minute
	case command.KindRestart:
		return 5 * time.Minute
	case command.KindBackup, command.KindBaseBackup, command.KindDrill:
		return time.Hour
	case command.KindRestore:
		return 4 * time.Hour
	case command.KindPrune:
		return 10 * time.Minute
	case command.KindStartCandidate, command.KindBlueGreen:
		// A candidate's health gate adds its healthy_deadline (the rollout
		// engine does); removing a container waits for its stop.
		return 5 * time.Minute
	default:
		return time.Minute
	}
}

// MaxTimeout bounds any per-host time limit.
const MaxTimeout = 24 * time.Hour

func invalid(field, format string, args ...any) error {
	return fault.Invalid(field, format, args...)
}

// ValidateSpec checks a spec's parameters; field names in errors are
// prefixed with prefix (e.g. "spec"). The agent checks them again against
// its own guard rails: this is the early, friendly refusal.
func ValidateSpec(prefix string, spec *flotillav1.CommandSpec) error {
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Pull:
		if _, err := validate.Image(k.Pull.GetImage()); err != nil {
			return invalid(prefix+".pull.image", "%v", err)
		}
		return nil
	case *flotillav1.CommandSpec_Restart:
		return validateRestart(prefix+".restart", k.Restart)
	case *flotillav1.CommandSpec_Backup:
		return validateBackupTarget(prefix+".backup", k.Backup.GetDatabase(), k.Backup.GetDestination())
	case *flotillav1.CommandSpec_BaseBackup:
		return validateBackupTarget(prefix+".base_backup", k.BaseBackup.GetDatabase(), k.BaseBackup.GetDestination())
	case *flotillav1.CommandSpec_Prune:
		return validatePrune(prefix+".prune", k.Prune)
	case *flotillav1.CommandSpec_Restore:
		return validateRestore(prefix+".restore", k.Restore)
	case *flotillav1.CommandSpec_Drill:
		if err := validateBackupTarget(prefix+".drill", k.Drill.GetDatabase(), k.Drill.GetDestination()); err != nil {
			return err
		}
		return validateBackupName(prefix+".drill.backup", k.Drill.GetBackup())
	case *flotillav1.CommandSpec_Drain:
		return validateUpstream(prefix+".drain", k.Drain.GetUpstream(), k.Drain.GetServer())
	case *flotillav1.CommandSpec_Undrain:
		return validateUpstream(prefix+".undrain", k.Undrain.GetUpstream(), k.Undrain.GetServer())
	case *flotillav1.CommandSpec_StartCandidate:
		return validateCandidate(prefix+".start_candidate", k.StartCandidate)
	case *flotillav1.CommandSpec_SwapServers:
		return validateSwap(prefix+".swap_servers", k.SwapServers)
	case *flotillav1.CommandSpec_BlueGreen:
		if err := validate.ContainerName(k.BlueGreen.GetContainer()); err != nil {
			return invalid(prefix+".blue_green.container", "%v", err)
		}
		if _, ok := flotillav1.BlueGreenAction_name[int32(k.BlueGreen.GetAction())]; !ok || k.BlueGreen.GetAction() == 0 {
			return invalid(prefix+".blue_green.action", "%d is not an action (PROMOTE, REPLACE, REVERT, RETIRE or DISCARD)", k.BlueGreen.GetAction())
		}
		return nil
	default:
		return invalid(prefix, "set exactly one of %s", strings.Join(command.Kinds(), ", "))
	}
}

func validateRestart(field string, r *flotillav1.RestartCommand) error {
	if err := validate.ContainerName(r.GetContainer()); err != nil {
		return invalid(field+".container", "%v", err)
	}
	if r.GetImage() != "" { // unset: keep the container's image
		if _, err := validate.Image(r.GetImage()); err != nil {
			return invalid(field+".image", "%v", err)
		}
	}
	if st := r.GetStopTimeout(); st != nil {
		if d := st.AsDuration(); st.CheckValid() != nil || d < 0 || d > 10*time.Minute {
			return invalid(field+".stop_timeout", "must be between 0s and 10m")
		}
	}
	return nil
}

func validateUpstream(field, upstream, server string) error {
	if err := validate.UpstreamName(upstream); err != nil {
		return invalid(field+".upstream", "%v; name an upstream of the agent's nginx.upstreams", err)
	}
	if err := validate.ServerAddress(server); err != nil {
		return invalid(field+".server", "%v", err)
	}
	return nil
}

// maxSwaps bounds the servers of one swap_servers.
const maxSwaps = 10000

func validateCandidate(field string, c *flotillav1.StartCandidateCommand) error {
	if err := validate.ContainerName(c.GetContainer()); err != nil {
		return invalid(field+".container", "%v", err)
	}
	if _, err := validate.Image(c.GetImage()); err != nil {
		return invalid(field+".image", "%v", err)
	}
	if p := c.GetPort(); p < 1 || p > 65535 {
		return invalid(field+".port", "must be 1-65535, got %d", p)
	}
	if p := c.GetCandidatePort(); p < 1 || p > 65535 || p == c.GetPort() {
		return invalid(field+".candidate_port", "must be 1-65535 and not port, got %d", p)
	}
	if d := c.GetMinHealthyTime(); d != nil && (d.CheckValid() != nil || d.AsDuration() < 0 || d.AsDuration() > time.Hour) {
		return invalid(field+".min_healthy_time", "must be between 0s and 1h")
	}
	if d := c.GetHealthyDeadline(); d != nil && (d.CheckValid() != nil || d.AsDuration() <= 0 || d.AsDuration() > MaxTimeout) {
		return invalid(field+".healthy_deadline", "must be positive and at most %s", MaxTimeout)
	}
	return nil
}

func validateSwap(field string, s *flotillav1.SwapServersCommand) error {
	if err := validate.UpstreamName(s.GetUpstream()); err != nil {
		return invalid(field+".upstream", "%v; name an upstream of the agent's nginx.upstreams", err)
	}
	if n := len(s.GetSwaps()); n == 0 || n > maxSwaps {
		return invalid(field+".swaps", "must list 1 to %d replacements, got %d", maxSwaps, n)
	}
	seen := map[string]bool{}
	for i, sw := range s.GetSwaps() {
		for _, f := range []struct{ name, v string }{{"from", sw.GetFrom()}, {"to", sw.GetTo()}} {
			if err := validate.ServerAddress(f.v); err != nil {
				return invalid(fmt.Sprintf("%s.swaps[%d].%s", field, i, f.name), "%v", err)
			}
			if seen[f.v] {
				return invalid(fmt.Sprintf("%s.swaps[%d].%s", field, i, f.name), "server %s appears twice", validate.Quote(f.v))
			}
			seen[f.v] = true
		}
	}
	return nil
}
