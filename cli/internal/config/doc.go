// Package config resolves where and as whom the flotilla command connects:
// flags, then the environment (FLOTILLA_ADDRESS, FLOTILLA_TOKEN,
// FLOTILLA_CA, FLOTILLA_CONTEXT), then the named context of the config file
// (FLOTILLA_CONFIG, else $XDG_CONFIG_HOME/flotilla/config.yaml, else
// ~/.config/flotilla/config.yaml). Secrets never live in the config file: a
// context names a token file or an operator certificate and its key.
package config
