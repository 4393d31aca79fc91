// Package selector parses and evaluates label selectors in the syntax
// Kubernetes users already know:
//
//	env=prod,role in (web,api),!canary,tier!=db,zone
//
// Requirements are joined by commas and all must hold. Supported operators:
// key=value (also ==), key!=value, key in (v1,v2), key notin (v1,v2), key
// (the label exists) and !key (it does not).
package selector
