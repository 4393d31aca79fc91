package command

import flotillav1 "flotilla.dev/gen/flotilla/v1"

// Kind names of command specs, as logs, metrics, the store and the agent's
// executor configuration use them.
const (
	KindPull    = "pull"
	KindRestart = "restart"
	KindBackup  = "backup"
	KindDrain   = "drain"
	KindUndrain = "undrain"
	// KindBaseBackup is a physical base backup (pg_basebackup).
	KindBaseBackup = "base_backup"
	// KindPrune applies a retention policy to stored backups.
	KindPrune = "prune"
	// KindRestore restores a dump or a base backup plus WAL.
	KindRestore = "restore"
	// KindDrill restores a backup into a scratch server and checks it.
	KindDrill = "drill"
	// KindStartCandidate starts a container's replacement beside it.
	KindStartCandidate = "start_candidate"
	// KindSwapServers replaces servers of an Nginx upstream in one reload.
	KindSwapServers = "swap_servers"
	// KindBlueGreen moves a container's name between its live, candidate
	// and previous containers, or removes one.
	KindBlueGreen = "blue_green"
)

// Kinds lists every kind this version knows, in the order of the oneof.
func Kinds() []string {
	return []string{KindPull, KindRestart, KindBackup, KindDrain, KindUndrain,
		KindBaseBackup, KindPrune, KindRestore, KindDrill, KindStartCandidate, KindSwapServers, KindBlueGreen}
}

// Kind names the kind of spec, or returns "" for a spec without a kind this
// version knows (a newer peer's, or none at all).
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
	case *flotillav1.CommandSpec_BaseBackup:
		return KindBaseBackup
	case *flotillav1.CommandSpec_Prune:
		return KindPrune
	case *flotillav1.CommandSpec_Restore:
		return KindRestore
	case *flotillav1.CommandSpec_Drill:
		return KindDrill
	case *flotillav1.CommandSpec_StartCandidate:
		return KindStartCandidate
	case *flotillav1.CommandSpec_SwapServers:
		return KindSwapServers
	case *flotillav1.CommandSpec_BlueGreen:
		return KindBlueGreen
	default:
		return ""
	}
}

// KindText names the kind of spec for messages ("not pull"): its kind, or
// "a command without a known kind" when Kind returns "".
func KindText(spec *flotillav1.CommandSpec) string {
	if k := Kind(spec); k != "" {
		return k
	}
	return "a command without a known kind"
}
