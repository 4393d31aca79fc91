// Package config loads the agent's configuration from a YAML file, FLOTILLA_*
// environment variables and command-line flags, in increasing order of
// precedence, on top of built-in defaults, and validates it.
package config
