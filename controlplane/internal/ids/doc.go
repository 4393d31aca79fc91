// Package ids makes the short random public identifiers of the control
// plane's objects (tokens, commands, rollouts), so that packages that need
// one do not depend on the package that authenticates callers.
package ids
