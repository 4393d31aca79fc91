package commands

import flotillav1 "flotilla.dev/gen/flotilla/v1"

// Kinds of command: the keys of Config.Executors.
const (
	KindPull    = "pull"
	KindRestart = "restart"
	KindBackup  = "backup"
	KindDrain   = "drain"
	KindUndrain = "undrain"
)

// Kinds lists every kind of command this agent version knows.
var Kinds = []string{KindPull, KindRestart, KindBackup, KindDrain, KindUndrain}

// KindOf names the kind of spec, or returns "" for a spec without a kind
// this agent version knows (a newer control plane's, or none at all).
func KindOf(spec *flotillav1.CommandSpec) string {
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
