package commands

import (
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
