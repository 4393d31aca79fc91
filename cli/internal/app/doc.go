// Package app is the flotilla command: its cobra commands, the resolution
// of the connection, the choice of output, and the mapping of every ending
// to an exit code (package exitcode). Main runs it with its standard
// streams and environment given, so tests run the whole command in process.
package app
