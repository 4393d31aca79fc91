// Package config loads the control plane's configuration from a YAML file,
// FLOTILLA_* environment variables and flags, in that order of precedence
// (flags win), and validates it with errors that name the field.
package config
